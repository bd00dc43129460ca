"""Beam writers of the build's Parquet outputs: records with a split as shards, other rows
(rejects, errors) as flat part files. Each file is bucketed by a hash of a row id and sorted
inside, so its bytes depend only on the rows, never on delivery order or interruptions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
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
    ordered = sorted(rows, key=lambda r: (str(r.get(sort_field)), _tie_breaker(r)))
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


class WriteFlatFiles(beam.PTransform):
    """Rows -> `OUT/<folder>/part-*.parquet` (rejects, errors), bucketed by `sort_field`."""

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
        self.out_dir, self.folder, self.schema = out_dir, folder, schema
        self.settings, self.shard_rows, self.sort_field = settings, shard_rows, sort_field

    def expand(self, rows: Any) -> Any:
        total = rows | "Count" >> beam.combiners.Count.Globally()
        return (
            rows
            | "Key"
            >> beam.Map(
                file_key,
                total_rows=beam.pvalue.AsSingleton(total),
                shard_rows=self.shard_rows,
                id_field=self.sort_field,
            )
            | "Group" >> MeasuredGroupByKey(f"{self.folder}.write")
            | "Write"
            >> beam.Map(
                write_group,
                FlatPath(self.out_dir, self.folder),
                self.schema,
                self.settings,
                self.sort_field,
            )
        )
