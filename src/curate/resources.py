"""Locate the bundled `pipelines/`, `schemas/` and `curation_rules/` folders.

In a wheel they live in `curate/_bundled/<name>` (hatch force-include); in a source checkout
(editable install, tests) they are the top-level folders of the repository.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

BUNDLED = ("pipelines", "schemas", "curation_rules")


@cache
def resource_dir(name: str) -> Path:
    if name not in BUNDLED:
        raise KeyError(f"unknown resource folder {name!r}; expected one of {BUNDLED}")
    here = Path(__file__).resolve().parent
    candidates = [here / "_bundled" / name, here.parent.parent / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled folder {name!r} not found in {[str(c) for c in candidates]}")


def resource_path(name: str, relative: str) -> Path:
    return resource_dir(name) / relative
