"""Shared fixtures. Real-data conformance tests skip with a clear reason when the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("CURATE_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real-data folder {REALDATA} is absent (set CURATE_REALDATA to point at it)")
    return REALDATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
