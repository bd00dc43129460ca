"""Shared fixtures and the real-data guard.

Real-data conformance tests read ../shared/realdata (or $CURATE_REALDATA). Without the folder they
skip with a clear reason, unless CURATE_REQUIRE_REALDATA=1 (CI): then they fail, so a CI checkout
that lost ../shared cannot pass by skipping. Every test that needs the folder must carry the
`realdata` marker (so `-m "not realdata"` really leaves them out); collection fails otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePath
from types import CodeType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REALDATA = REPO_ROOT.parent / "shared" / "realdata"
REALDATA = Path(os.environ.get("CURATE_REALDATA", DEFAULT_REALDATA))
REQUIRE_REALDATA_ENV = "CURATE_REQUIRE_REALDATA"

# Tests build with the public demo salt (so pseudonyms are reproducible); a patient-data build
# without a salt is refused (curate.parse.deid), and the tests of that rule clear these themselves.
os.environ["CURATE_UID_SALT"] = "curate-public-default-salt"
os.environ.pop("CURATE_UID_SALT_FILE", None)


def realdata_required() -> bool:
    return os.environ.get(REQUIRE_REALDATA_ENV, "") == "1"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if REALDATA.is_dir():
        return REALDATA
    absent = f"real-data folder {REALDATA} is absent (set CURATE_REALDATA to point at it)"
    if realdata_required():
        pytest.fail(f"{absent}; {REQUIRE_REALDATA_ENV}=1 says this run needs it", pytrace=False)
    pytest.skip(absent)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    """A function's code and every nested code (comprehensions, inner functions, lambdas)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def _is_realdata_path(value: object) -> bool:
    if not isinstance(value, PurePath):
        return False
    path = Path(value)
    return any(path == root or root in path.parents for root in (REALDATA, DEFAULT_REALDATA))


def _reads_realdata_path(function: Any) -> bool:
    """True when the test body names the real-data path without going through the fixture:
    a global holding a path in it (e.g. an imported REALDATA) or the CURATE_REALDATA variable."""
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    namespace = getattr(function, "__globals__", {})
    for each in _code_objects(code):
        if "CURATE_REALDATA" in each.co_consts:
            return True
        if any(_is_realdata_path(namespace.get(name)) for name in each.co_names):
            return True
    return False


def needs_realdata(item: pytest.Item) -> bool:
    """The fixture anywhere in the test's fixture closure, or the path read directly."""
    if "realdata" in getattr(item, "fixturenames", ()):
        return True
    return _reads_realdata_path(getattr(item, "function", None))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if needs_realdata(item) and item.get_closest_marker("realdata") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests need ../shared/realdata but lack the `realdata` marker "
            "(add `pytestmark = pytest.mark.realdata` or `@pytest.mark.realdata`):\n  "
            + "\n  ".join(unmarked)
        )
