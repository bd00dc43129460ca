"""File access through Beam's `FileSystems`, so `gs://` and `s3://` work like local paths.

Pure modules (parsers) take bytes; sources call these helpers to get them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

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


def sample_files(root: str, limit: int) -> list[str]:
    """At most `limit` files below `root`, from a bounded walk: enough to recognise a layout
    without listing a bucket of millions of keys. Locally each folder is read only up to
    `limit` entries (first come, then sorted), depth first; an object store gives its first
    `limit` keys in key order."""
    if not is_local(root):
        matched = FileSystems.match([root.rstrip("/") + "/**"], limits=[limit])[0]
        return sorted(m.path for m in matched.metadata_list)
    if os.path.isfile(root):
        return [root]
    found: list[str] = []
    pending = [root]
    while pending and len(found) < limit:
        files, folders = _first_entries(pending.pop(), limit)
        found.extend(files[: limit - len(found)])
        pending.extend(reversed(folders))  # pop() takes the first folder next
    return found


def _first_entries(directory: str, limit: int) -> tuple[list[str], list[str]]:
    """(files, folders) among the first `limit` entries of a local folder, each sorted."""
    files: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for count, entry in enumerate(entries):
                if count >= limit:
                    break
                (folders if entry.is_dir() else files).append(entry.path)
    except OSError:
        pass  # unreadable or vanished: a sample simply has less in it
    return sorted(files), sorted(folders)


def files_with_prefix(directory: str, prefix: str) -> list[str]:
    """Every file below `directory` whose path relative to it starts with `prefix`, sorted. An
    object store lists only the keys under that prefix; a local folder reads its own entries
    once and walks only the matching subfolders."""
    if not is_local(directory):
        return glob(f"{directory.rstrip('/')}/{prefix}**")
    found: list[str] = []
    try:
        with os.scandir(directory) as entries:
            matching = [e for e in entries if e.name.startswith(prefix)]
    except OSError:
        return []  # no such folder: nothing has the prefix
    for entry in matching:
        found.extend(walk_files(entry.path) if entry.is_dir() else [entry.path])
    return sorted(found)


@contextmanager
def open_text(path: str) -> Iterator[TextIO]:
    """`path` as UTF-8 text, streamed (gunzipped when the name ends in `.gz`): inventory files
    are too large to read whole."""
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        binary = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
        yield io.TextIOWrapper(binary, encoding="utf-8", newline="")


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


def folder_signature(uri: str) -> str:
    """A digest of a remote folder's file names and sizes: what a local copy must match."""
    matched = FileSystems.match([uri.rstrip("/") + "/**"])[0].metadata_list
    listing = sorted((m.path, m.size_in_bytes) for m in matched)
    return hashlib.sha1(repr(listing).encode()).hexdigest()


def local_copy(uri: str, cache_root: str, version: str) -> str:
    """A folder on an object store (a KB, a model) copied once per machine into `cache_root`,
    keyed by its URI and `version` (a manifest's sha256, `folder_signature`), so libraries that
    need local files can load it and a folder replaced under the same URI is fetched again."""
    key = hashlib.sha1(f"{uri}\n{version}".encode()).hexdigest()[:16]
    local = os.path.join(cache_root, key)
    if os.path.isdir(local):
        return local
    os.makedirs(cache_root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{key}.", dir=cache_root)
    prefix = uri.rstrip("/") + "/"
    for path in walk_files(uri):
        target = os.path.join(staging, path[len(prefix) :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(read_bytes(path))
    try:
        os.replace(staging, local)  # atomic: a reader never sees half a copy
    except OSError:  # another worker process on this machine finished first
        shutil.rmtree(staging, ignore_errors=True)
    return local
