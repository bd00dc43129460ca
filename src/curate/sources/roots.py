"""A source's root checked before any pipeline starts: it exists, it can be read, it holds files.

A typo in a path must not become an empty "successful" dataset, so `curate validate` and the
build's driver both ask `root_problem` first. The check reads at most one entry (a bucket of
millions of keys is not listed). A source that may legitimately be empty says `allow_empty`.
"""

from __future__ import annotations

import os

from curate import fs


def root_problem(path: str, *, allow_empty: bool = False) -> str | None:
    """Why `path` cannot be a source root, or None."""
    if fs.is_local(path):
        if not os.path.exists(path):
            return f"path {path} does not exist"
        readable = os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))
        if not readable:
            return f"path {path} is not readable (permissions)"
    try:
        present = fs.sample_files(path, 1)
    except Exception as exc:  # noqa: BLE001 - any listing failure is the user's to see
        return f"cannot list {path}: {exc}"
    if not present and not allow_empty:
        return (
            f"path {path} holds no files (a wrong path? say allow_empty: true for a source "
            "that may be empty)"
        )
    return None
