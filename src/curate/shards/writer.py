"""Parquet writing with the explicit Arrow schema and its identity in the key-value metadata."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import fs
from curate.shards import layout


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    # Explicit schema: a writer never infers types, so every shard of a build has one shape.
    return pa.Table.from_pylist(rows, schema=schema)


def write_parquet(
    path: str,
    rows: list[dict[str, Any]],
    schema: pa.Schema,
    *,
    compression: str = "zstd",
    compression_level: int | None = None,
    row_group_rows: int = 256,
    digest_path: str | None = None,
) -> int:
    """Write `rows` atomically to `path` (local or remote); returns the row count.

    With `digest_path`, the file's size and sha256 are written there too, computed from the
    bytes in hand, so the manifest need not read every output file back.
    """
    table = rows_to_table(rows, schema)
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression=None if compression == "none" else compression,
        compression_level=compression_level,
        row_group_size=row_group_rows,
        write_statistics=True,
    )
    data = buffer.getvalue()
    fs.write_bytes_atomic(path, data)
    if digest_path is not None:
        digest = {
            "rows": table.num_rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        fs.write_bytes_atomic(digest_path, json.dumps(digest, sort_keys=True).encode())
    return table.num_rows


def read_rows(
    path: str,
    columns: list[str] | None = None,
    keep: Callable[[pa.Table], Any] | None = None,
) -> list[dict[str, Any]]:
    """The file's rows as dicts; `keep(table)` (a boolean mask) selects rows in Arrow first, so
    rows (and image bytes) a caller would drop are never turned into Python objects."""
    if fs.is_local(path):
        table = pq.read_table(path, columns=columns)
    else:
        table = pq.read_table(io.BytesIO(fs.read_bytes(path)), columns=columns)
    if keep is not None:
        table = table.filter(keep(table))
    return table.to_pylist()


def count_rows(path: str) -> int:
    if fs.is_local(path):
        return pq.ParquetFile(path).metadata.num_rows
    return pq.ParquetFile(io.BytesIO(fs.read_bytes(path))).metadata.num_rows


def relative_path(out_dir: str, path: str) -> str:
    """`path` relative to the build folder, with forward slashes."""
    relative = path[len(out_dir) :].lstrip("/\\") if path.startswith(out_dir) else path
    return relative.replace("\\", "/")


def digest_path(out_dir: str, path: str) -> str:
    """Where the writer leaves the size and sha256 of an output file for the manifest."""
    name = relative_path(out_dir, path).replace("/", "__") + ".json"
    return fs.join(out_dir, layout.DIGESTS, name)
