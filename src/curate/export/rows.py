"""Rows of a build's Parquet tables, one row group at a time (bounded memory), with pyarrow
alone: the readers behind `curate inspect`, `curate why` and the exports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import SpecError
from curate.shards import storage


def split_files(out: str, split: str, table: str = "shards") -> list[str]:
    files = storage.list_files(storage.join(out, table, split), ".parquet")
    if not files:
        raise SpecError(f"{out} has no {table}/{split}/*.parquet: no such split in this build")
    return files


def iter_rows(
    files: list[str], columns: list[str] | None = None, where: tuple[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of Parquet files as dicts; `columns` not in a file are left out; `where` =
    (column, value) keeps the rows whose column equals value (files without it: none)."""
    for path in files:
        with storage.open_input(path) as handle:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            if where and where[0] not in names:
                continue
            wanted = [c for c in columns if c in names] if columns else None
            if wanted is not None and where and where[0] not in wanted:
                wanted = [*wanted, where[0]]
            for index in range(parquet.num_row_groups):
                table = parquet.read_row_group(index, columns=wanted)
                if where:
                    table = table.filter(pc.equal(table.column(where[0]), where[1]))
                    if columns and where[0] not in columns:
                        table = table.drop_columns([where[0]])
                yield from table.to_pylist()


def iter_tables(files: list[str]) -> Iterator[Any]:
    """Each row group of each file as a pyarrow Table."""
    for path in files:
        with storage.open_input(path) as handle:
            parquet = pq.ParquetFile(handle)
            for index in range(parquet.num_row_groups):
                yield parquet.read_row_group(index)
