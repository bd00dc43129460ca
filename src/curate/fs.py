"""File access through Beam's `FileSystems`, so `gs://` and `s3://` work like local paths.

Pure modules (parsers) take bytes; sources call these helpers to get them.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import threading
import uuid
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    return "://" not in path


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(base, *parts)


# Bytes `read_bytes` returned, per thread: phase 1 reports each unit's input bytes with it.
_reads = threading.local()


def bytes_read_by_this_thread() -> int:
    return getattr(_reads, "total", 0)


def read_bytes(path: str, limit: int | None = None) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        data = handle.read() if limit is None else handle.read(limit)
    _reads.total = bytes_read_by_this_thread() + len(data)
    return data


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def glob(pattern: str) -> list[str]:
    """Sorted paths matching a glob pattern (deterministic order for reproducible builds)."""
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def walk_files(root: str) -> Iterator[str]:
    """Every file below `root`, recursively, sorted."""
    if is_local(root):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                yield os.path.join(dirpath, name)
    else:
        yield from glob(root.rstrip("/") + "/**")


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        FileSystems.mkdirs(path) if not FileSystems.exists(path) else None


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write to a temporary name then rename, so a reader never sees a half-written file."""
    parent = posixpath.dirname(path) if not is_local(path) else os.path.dirname(path)
    if parent:
        makedirs(parent)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(tmp) as handle:
        handle.write(data)
    if is_local(path):
        os.replace(tmp, path)
    else:
        FileSystems.rename([tmp], [path])


def delete(paths: list[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def remove(path: str) -> None:
    """Remove a file or a whole folder (on an object store: the object and every key below
    it); nothing there is not an error. Callers pass only paths the build itself writes."""
    if is_local(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.isfile(path):
            os.remove(path)
    else:
        delete([path, *glob(path.rstrip("/") + "/**")])
