"""Reading a build folder wherever it lives: local paths as they are, `s3://` / `gs://` (any
URI pyarrow knows) through pyarrow's own filesystems, so a training machine needs no Beam.
Credentials and endpoints come from the environment as for any pyarrow or AWS client
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ... or GCS's application default credentials)."""

from __future__ import annotations

import posixpath
from functools import cache
from pathlib import Path
from typing import IO, Any

import pyarrow.fs as pafs


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


@cache
def _filesystem(scheme_and_bucket: str) -> Any:
    filesystem, _ = pafs.FileSystem.from_uri(scheme_and_bucket)
    return filesystem


def _split(uri: str) -> tuple[Any, str]:
    scheme, _, rest = uri.partition("://")
    bucket = rest.split("/", 1)[0]
    return _filesystem(f"{scheme}://{bucket}"), rest


def join(base: str | Path, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(str(base), *parts)
    return str(Path(base).joinpath(*parts))


def list_files(folder: str | Path, suffix: str) -> list[str]:
    """Sorted paths of the files directly in `folder` ending with `suffix` (none: empty)."""
    if not is_remote(folder):
        return sorted(str(p) for p in Path(folder).glob(f"*{suffix}"))
    filesystem, path = _split(str(folder).rstrip("/"))
    scheme = str(folder).partition("://")[0]
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(
        f"{scheme}://{info.path}"
        for info in infos
        if info.type == pafs.FileType.File and info.path.endswith(suffix)
    )


def open_input(path: str | Path) -> IO[bytes]:
    if not is_remote(path):
        return open(path, "rb")
    filesystem, key = _split(str(path))
    return filesystem.open_input_file(key)


def read_text(path: str | Path) -> str | None:
    """The file's text, or None when it does not exist."""
    if not is_remote(path):
        return Path(path).read_text() if Path(path).is_file() else None
    filesystem, key = _split(str(path))
    if filesystem.get_file_info(key).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(key) as handle:
        return handle.read().decode()
