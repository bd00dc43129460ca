"""Beam writers of the build's Parquet outputs: records with a split as shards, other rows
(rejects, errors) as flat part files. Each file is bucketed by a hash of a row id and sorted
inside, so its bytes depend only on the rows, never on delivery order or interruptions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import apache_beam as beam
import pyarrow as pa

from curate import fs
from curate.shards import layout
from curate.shards.layout import stable_bucket
from curate.shards.writer import digest_path, write_parquet
from curate.shuffle import MeasuredGroupByKey


@dataclass
class WriteSettings:
    compression: str
    compression_level: int | None
    row_group_rows: int


def shard_key(
    record: dict[str, Any], counts: dict[str, int], shard_rows: int
) -> tuple[tuple[str, int, int], dict[str, Any]]:
    total = max(1, math.ceil(counts.get(record["split"], 0) / shard_rows))
    return (record["split"], stable_bucket(record["record_id"], total), total), record


def file_key(
    row: dict[str, Any], total_rows: int, shard_rows: int, id_field: str
) -> tuple[tuple[int, int], dict[str, Any]]:
    total = max(1, math.ceil(total_rows / shard_rows))
    return (stable_bucket(str(row.get(id_field)), total), total), row


def write_group(
    item: tuple[Any, Iterable[dict[str, Any]]],
    path_of: Any,
    schema: pa.Schema,
    settings: WriteSettings,
    sort_field: str,
) -> dict[str, Any]:
    key, rows = item
    # A total order (ties broken by every text column), so a file's bytes never depend on the
    # order in which the runner delivered its rows.
    ordered = _total_order(rows, sort_field)
    path = path_of(key)
    count = write_parquet(
        path,
        ordered,
        schema,
        compression=settings.compression,
        compression_level=settings.compression_level,
        row_group_rows=settings.row_group_rows,
        digest_path=digest_path(path_of.out_dir, path),
    )
    return {"path": path, "rows": count}


def _total_order(rows: Iterable[dict[str, Any]], sort_field: str) -> list[dict[str, Any]]:
    """Rows sorted by `sort_field`, rows of one value by `_tie_breaker`: the order of sorting by
    both, with the costly tie-breaker made only for the values that repeat (ids rarely do)."""

    def value(row: dict[str, Any]) -> str:
        return str(row.get(sort_field))

    out: list[dict[str, Any]] = []
    for _, run in groupby(sorted(rows, key=value), key=value):
        same = list(run)
        out.extend(sorted(same, key=_tie_breaker) if len(same) > 1 else same)
    return out


def _tie_breaker(row: dict[str, Any]) -> str:
    return repr(
        sorted((k, v) for k, v in row.items() if isinstance(v, str | int | float) and v is not None)
    )


class ShardPath:
    def __init__(self, out_dir: str, table: str) -> None:
        self.out_dir, self.table = out_dir, table

    def __call__(self, key: tuple[str, int, int]) -> str:
        split, index, total = key
        return fs.join(self.out_dir, self.table, split, layout.shard_name(split, index, total))


class FlatPath:
    def __init__(self, out_dir: str, folder: str) -> None:
        self.out_dir, self.folder = out_dir, folder

    def __call__(self, key: tuple[int, int]) -> str:
        index, total = key
        return fs.join(self.out_dir, self.folder, f"part-{index:05d}-of-{total:05d}.parquet")


class WriteSplitShards(beam.PTransform):
    """Records with a `split` -> `OUT/<table>/<split>/part-*.parquet`, bucketed by a hash of the
    record id (shard count from the split's size), sorted inside each shard."""

    def __init__(
        self, out_dir: str, table: str, schema: pa.Schema, settings: WriteSettings, shard_rows: int
    ) -> None:
        super().__init__()
        self.out_dir, self.table, self.schema = out_dir, table, schema
        self.settings, self.shard_rows = settings, shard_rows

    def expand(self, rows: Any) -> Any:
        counts = (
            rows
            | "SplitOf" >> beam.Map(lambda r: (r["split"], 1))
            | "CountSplits" >> beam.CombinePerKey(sum)
        )
        return (
            rows
            | "ShardKey"
            >> beam.Map(shard_key, counts=beam.pvalue.AsDict(counts), shard_rows=self.shard_rows)
            | "GroupShards" >> MeasuredGroupByKey(f"{self.table}.write")
            | "WriteShards"
            >> beam.Map(
                write_group,
                ShardPath(self.out_dir, self.table),
                self.schema,
                self.settings,
                "record_id",
            )
        )


@dataclass(frozen=True)
class FlatTable:
    """A flat output table: its folder under OUT, its Arrow schema and the row field that
    buckets and sorts its files."""

    folder: str
    schema: pa.Schema
    sort_field: str


def _table_file_key(
    item: tuple[str, dict[str, Any]],
    counts: dict[str, int],
    tables: dict[str, FlatTable],
    shard_rows: int,
) -> tuple[tuple[str, int, int], dict[str, Any]]:
    folder, row = item
    (index, total), row = file_key(row, counts[folder], shard_rows, tables[folder].sort_field)
    return (folder, index, total), row


def _write_table_file(
    item: tuple[tuple[str, int, int], Iterable[dict[str, Any]]],
    out_dir: str,
    tables: dict[str, FlatTable],
    settings: WriteSettings,
) -> dict[str, Any]:
    (folder, index, total), rows = item
    table = tables[folder]
    path_of = FlatPath(out_dir, folder)
    return write_group(((index, total), rows), path_of, table.schema, settings, table.sort_field)


def _tagged(folder: str) -> Any:
    return lambda row: (folder, row)


class WriteFlatTables(beam.PTransform):
    """{folder: rows} -> `OUT/<folder>/part-*.parquet` for each table (rejects, errors), bucketed
    by the table's `sort_field` (file count from the table's row count). The tables share one
    count and one shuffle, so a build's few small tables cost a few steps, not a few each; the
    shuffle is counted per table (`<folder>.write`)."""

    def __init__(
        self,
        out_dir: str,
        tables: list[FlatTable],
        settings: WriteSettings,
        shard_rows: int,
    ) -> None:
        super().__init__()
        self.out_dir, self.tables = out_dir, {t.folder: t for t in tables}
        self.settings, self.shard_rows = settings, shard_rows

    def expand(self, inputs: dict[str, Any]) -> Any:
        tagged = [
            rows | f"Tag_{folder}" >> beam.Map(_tagged(folder)) for folder, rows in inputs.items()
        ]
        rows = tagged | "AllTables" >> beam.Flatten()
        counts = rows | "CountRows" >> beam.combiners.Count.PerKey()
        return (
            rows
            | "Key"
            >> beam.Map(
                _table_file_key,
                counts=beam.pvalue.AsDict(counts),
                tables=self.tables,
                shard_rows=self.shard_rows,
            )
            | "Group" >> MeasuredGroupByKey(label_of=lambda e: f"{e[0][0]}.write")
            | "Write" >> beam.Map(_write_table_file, self.out_dir, self.tables, self.settings)
        )


class WriteFlatFiles(beam.PTransform):
    """Rows -> `OUT/<folder>/part-*.parquet` (rejects, errors), bucketed by `sort_field`: one
    table of `WriteFlatTables`."""

    def __init__(
        self,
        out_dir: str,
        folder: str,
        schema: pa.Schema,
        settings: WriteSettings,
        shard_rows: int,
        sort_field: str,
    ) -> None:
        super().__init__()
        self.table = FlatTable(folder, schema, sort_field)
        self.out_dir, self.settings, self.shard_rows = out_dir, settings, shard_rows

    def expand(self, rows: Any) -> Any:
        return {self.table.folder: rows} | "Table" >> WriteFlatTables(
            self.out_dir, [self.table], self.settings, self.shard_rows
        )
