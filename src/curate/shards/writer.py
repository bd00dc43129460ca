"""Parquet writing with the explicit Arrow schema and its identity in the key-value metadata."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import fs


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
) -> int:
    """Write `rows` atomically to `path` (local or remote); returns the row count."""
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
    fs.write_bytes_atomic(path, buffer.getvalue())
    return table.num_rows


def read_rows(path: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if fs.is_local(path):
        return pq.read_table(path, columns=columns).to_pylist()
    return pq.read_table(io.BytesIO(fs.read_bytes(path)), columns=columns).to_pylist()


def count_rows(path: str) -> int:
    if fs.is_local(path):
        return pq.ParquetFile(path).metadata.num_rows
    return pq.ParquetFile(io.BytesIO(fs.read_bytes(path))).metadata.num_rows
