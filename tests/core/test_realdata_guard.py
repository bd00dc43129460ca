"""The real-data guard in tests/conftest.py, run on throwaway test files in a separate pytest.

Unmarked tests that need ../shared/realdata must stop collection (naming them), and a missing
folder must skip by default but fail under CURATE_REQUIRE_REALDATA=1 (what CI sets).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
INI = "[pytest]\nmarkers =\n    realdata: needs the real-data folder\naddopts = --strict-markers\n"
USAGE_ERROR = 4


def run_pytest(
    folder: Path, tests: str, realdata: Path, require: str | None = None
) -> subprocess.CompletedProcess[str]:
    (folder / "conftest.py").write_text(CONFTEST.read_text())
    (folder / "pytest.ini").write_text(INI)
    (folder / "test_sample.py").write_text(tests)
    env = {k: v for k, v in os.environ.items() if k != "CURATE_REQUIRE_REALDATA"}
    env["CURATE_REALDATA"] = str(realdata)
    if require is not None:
        env["CURATE_REQUIRE_REALDATA"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


UNMARKED = """
import pytest
from conftest import REALDATA


@pytest.fixture
def reports(realdata):
    return realdata / "reports"


def test_fixture(realdata):
    pass


def test_through_another_fixture(reports):
    pass


def test_reads_the_path():
    assert [REALDATA / "x"]


@pytest.mark.realdata
def test_marked(realdata):
    pass


def test_plain():
    pass
"""


def test_unmarked_tests_needing_realdata_stop_collection_by_name(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, UNMARKED, realdata=tmp_path)
    assert result.returncode == USAGE_ERROR
    lines = [line.strip() for line in result.stderr.splitlines()]
    named = sorted(line for line in lines if line.startswith("test_sample.py::"))
    assert named == [
        "test_sample.py::test_fixture",
        "test_sample.py::test_reads_the_path",
        "test_sample.py::test_through_another_fixture",
    ]
    assert "lack the `realdata` marker" in result.stderr


MARKED = """
import pytest

pytestmark = pytest.mark.realdata


def test_needs_it(realdata):
    assert realdata.is_dir()
"""


def test_present_folder_is_handed_to_the_test(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MARKED, realdata=tmp_path, require="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_absent_folder_skips_without_the_requirement(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MARKED, realdata=tmp_path / "absent")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert f"real-data folder {tmp_path / 'absent'} is absent" in result.stdout


def test_absent_folder_fails_when_required(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MARKED, realdata=tmp_path / "absent", require="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "CURATE_REQUIRE_REALDATA=1 says this run needs it" in result.stdout
