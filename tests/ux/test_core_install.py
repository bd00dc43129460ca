"""Item 5: a core install builds a PMC spec without torch; a spec needing an extra says which,
in one line; the package ships a LICENSE and keeps torch out of its core dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib
from ux_helpers import BLOCKER, TORCH_STACK, run_curate

REPO = Path(__file__).resolve().parents[2]


def test_core_build_runs_without_torch(core_build: tuple[Path, str, str]) -> None:
    out, stdout, _ = core_build
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["records"]["kept"] > 0
    assert all(i["holds"] for i in manifest["identities"])
    assert f"output: {out}; data card: " in stdout


def test_a_spec_needing_an_extra_names_it_in_one_line(tmp_path: Path) -> None:
    # the demo spec links entities (nlp extra) and embeds (embed extra)
    done = run_curate(
        ["build", "--spec", "demo", "--out", str(tmp_path / "out")], blocked=("scispacy",)
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert 'pip install "curate[nlp]"' in lines[0] and "enrich.link" in lines[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written

    done = run_curate(["build", "--spec", "demo", "--out", str(tmp_path / "o2")], TORCH_STACK)
    assert done.returncode == 2 and 'pip install "curate[embed]"' in done.stderr


def test_load_shards_without_torch_names_the_extra(tmp_path: Path) -> None:
    done = run_curate(["--version"], blocked=TORCH_STACK)
    assert done.returncode == 0  # the CLI itself needs no torch
    code = BLOCKER.format(blocked=["torch"]) + "from curate import load_shards\n"
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert failed.returncode != 0
    assert 'load_shards needs torch: pip install "curate[loader]"' in failed.stderr


def test_torch_is_only_in_the_extras_that_need_it() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("torch") for dep in project["dependencies"])
    extras = project["optional-dependencies"]
    for extra in ("embed", "train", "loader"):
        assert any(dep.startswith("torch") for dep in extras[extra]), extra
    assert not any(dep.startswith("numpy") and "<2" in dep for dep in project["dependencies"])


def test_license_file_is_the_apache_license() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
