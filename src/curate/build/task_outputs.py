"""Phase-2 outputs written from the phase-1 task files, so heavy columns never shuffle.

    compact rows + decisions --join on record id (compact)--> each task's fate
        (its kept rows per split, its dropped records with their decisions)
    fates --pack whole tasks into files (curate.shards.packing)--> (file, [fates])
    each file's writer reads its tasks' kept/rejects Parquet itself, applies the decisions,
    sorts and writes.

Only ids, splits and decisions travel through the shuffle; image bytes are read from the task
files by the one writer that needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from curate.build.plan import task_file
from curate.build.timings import Phase2Step, file_size
from curate.instruct.records import image_fields
from curate.schema import RecordSchema, reject_schema
from curate.shards import layout
from curate.shards.beam import FlatPath, ShardPath, WriteSettings, write_group
from curate.shards.packing import file_of_task
from curate.shards.writer import count_rows, read_rows
from curate.shuffle import MeasuredCoGroupByKey, MeasuredGroupByKey
from curate.stages import Rejected

Decision = tuple[str, str, str | None]  # (stage, reason, duplicate_of)
SHARDS = "shards"
KEPT = "kept"
# Beam metrics of the join and the writers (the manifest's `timings.phase2`).
DECISIONS = Phase2Step("decisions")
WRITE_SHARDS = Phase2Step("write_shards")
WRITE_REJECTS = Phase2Step("write_rejects")


@dataclass
class TaskFate:
    """What phase 2 decided for one task's records (compact: ids and counts only)."""

    task_id: str
    kept: dict[str, int] = field(default_factory=dict)  # split -> rows kept
    dropped: dict[str, Decision] = field(default_factory=dict)  # record_id -> decision
    phase1_rejects: int = 0

    @property
    def rejects(self) -> int:
        return self.phase1_rejects + len(self.dropped)


def _fate_item(item: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[str, Any]]:
    record_id, joined = item
    decision = joined["decision"][0] if joined["decision"] else None
    DECISIONS.count("records_in", len(joined["row"]))
    if decision is not None:
        DECISIONS.count("drops", len(joined["row"]))
    for task_id, split in joined["row"]:
        yield task_id, (record_id, split, decision)


class _TaskFates(beam.DoFn):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def process(self, item: tuple[str, dict[str, list[Any]]]) -> Iterator[TaskFate]:
        task_id, joined = item
        fate = TaskFate(task_id=task_id)
        for record_id, split, decision in joined["record"]:
            if decision is None:
                fate.kept[split] = fate.kept.get(split, 0) + 1
            else:
                fate.dropped[record_id] = tuple(decision)  # type: ignore[assignment]
        # The footer holds the count: no rows are read to plan the rejects files.
        fate.phase1_rejects = count_rows(task_file(self.out_dir, task_id, "rejects.parquet"))
        yield fate


def plan_files(fates: list[TaskFate], shard_rows: int) -> dict[tuple[str, str, str], Any]:
    """(table, group, task_id) -> (group, index, total) for every task with rows in that table."""
    shards = file_of_task(
        ((split, f.task_id, n) for f in fates for split, n in f.kept.items()), shard_rows
    )
    rejects = file_of_task((("", f.task_id, f.rejects) for f in fates), shard_rows)
    plan: dict[tuple[str, str, str], Any] = {}
    plan.update({(SHARDS, group, task): key for (group, task), key in shards.items()})
    plan.update({(layout.REJECTS, group, task): key for (group, task), key in rejects.items()})
    return plan


def _assign(fate: TaskFate, plan: dict[tuple[str, str, str], Any]) -> Iterator[tuple[Any, Any]]:
    for split in sorted(fate.kept):
        yield (SHARDS, *plan[(SHARDS, split, fate.task_id)]), fate
    if fate.rejects:
        yield (layout.REJECTS, *plan[(layout.REJECTS, "", fate.task_id)]), fate


class _WriteTaskFile(beam.DoFn):
    """One output file from its tasks' files: kept rows of one split, or every reject."""

    def __init__(
        self,
        out_dir: str,
        schema: RecordSchema,
        settings: WriteSettings,
        emit_kept: bool,
        kept_image_bytes: bool,
    ) -> None:
        self.out_dir, self.schema, self.settings = out_dir, schema, settings
        self.emit_kept, self.kept_image_bytes = emit_kept, kept_image_bytes

    def process(self, item: tuple[tuple[str, str, int, int], Iterable[TaskFate]]) -> Iterator[Any]:
        (table, split, index, total), fates = item
        ordered = sorted(fates, key=lambda f: f.task_id)
        step = WRITE_SHARDS if table == SHARDS else WRITE_REJECTS
        # Written before the first yield, so the step's time excludes the steps downstream.
        with step.timed():
            if table == SHARDS:
                rows = [row for fate in ordered for row in self._kept(fate, split)]
                result = write_group(
                    ((split, index, total), rows),
                    ShardPath(self.out_dir, SHARDS),
                    self.schema.arrow,
                    self.settings,
                    "record_id",
                )
            else:
                rows = [row for fate in ordered for row in self._rejects(fate)]
                result = write_group(
                    ((index, total), rows),
                    FlatPath(self.out_dir, layout.REJECTS),
                    reject_schema(self.schema),
                    self.settings,
                    "record_id",
                )
        step.count("files")
        step.count("records_out", result["rows"])
        step.count("bytes_written", file_size(result["path"]))
        if table == SHARDS and self.emit_kept:
            for row in rows:
                kept = row if self.kept_image_bytes else without_image_bytes(row)
                yield beam.pvalue.TaggedOutput(KEPT, kept)
        yield result

    def _kept(self, fate: TaskFate, split: str) -> Iterator[dict[str, Any]]:
        path = task_file(self.out_dir, fate.task_id, "kept.parquet")
        WRITE_SHARDS.count("bytes_read", file_size(path))
        for row in read_rows(path, keep=lambda table: pc.equal(table["split"], split)):
            if row["record_id"] not in fate.dropped:
                yield row

    def _rejects(self, fate: TaskFate) -> Iterator[dict[str, Any]]:
        if fate.phase1_rejects:
            path = task_file(self.out_dir, fate.task_id, "rejects.parquet")
            WRITE_REJECTS.count("bytes_read", file_size(path))
            yield from read_rows(path)
        if fate.dropped:
            path = task_file(self.out_dir, fate.task_id, "kept.parquet")
            WRITE_REJECTS.count("bytes_read", file_size(path))
            dropped = pa.array(sorted(fate.dropped))

            def is_dropped(table: pa.Table) -> Any:
                ids = table["record_id"]
                return pc.is_in(ids, value_set=dropped.cast(ids.type))

            for row in read_rows(path, keep=is_dropped):
                stage, reason, duplicate_of = fate.dropped[row["record_id"]]
                yield Rejected(row, reason, stage, duplicate_of).as_row()


def without_image_bytes(row: dict[str, Any]) -> dict[str, Any]:
    """The record for a step that needs its image's hash, not its bytes (instructions that do
    not copy images): the kept records then move as ids and text, not pictures."""
    if not row.get("image"):
        return row
    return {**row, **image_fields(row, include_image=False)}


class WriteFromTasks(beam.PTransform):
    """(task ids, compact rows, decisions) -> shards and rejects written from the task files.

    Returns the written files' `{path, rows}`; with `emit_kept`, also (tag `kept`) the kept
    records themselves, for stages that run after the shards (instructions), image bytes
    replaced by the image's hash unless `kept_image_bytes`."""

    def __init__(
        self,
        out_dir: str,
        schema: RecordSchema,
        settings: WriteSettings,
        shard_rows: int,
        emit_kept: bool = False,
        kept_image_bytes: bool = True,
    ) -> None:
        super().__init__()
        self.out_dir, self.schema, self.settings = out_dir, schema, settings
        self.shard_rows, self.emit_kept = shard_rows, emit_kept
        self.kept_image_bytes = kept_image_bytes

    def expand(self, inputs: tuple[Any, Any, Any]) -> Any:
        task_ids, compact, decisions = inputs
        by_id = compact | "ById" >> beam.Map(lambda r: (r["record_id"], (r["task_id"], r["split"])))
        records = (
            {"row": by_id, "decision": decisions}
            | "JoinDecisions" >> MeasuredCoGroupByKey("phase2.join_decisions")
            | "ByTask" >> beam.FlatMap(_fate_item)
        )
        fates = (
            {"task": task_ids | "KeyTasks" >> beam.Map(lambda t: (t, None)), "record": records}
            | "GroupTasks" >> MeasuredCoGroupByKey("phase2.group_tasks")
            | "Fates" >> beam.ParDo(_TaskFates(self.out_dir))
        )
        plan = (
            fates
            | "AllFates" >> beam.combiners.ToList()
            | "PlanFiles" >> beam.Map(plan_files, self.shard_rows)
        )
        outputs = (
            fates
            | "Assign" >> beam.FlatMap(_assign, plan=beam.pvalue.AsSingleton(plan))
            | "GroupFiles" >> MeasuredGroupByKey("phase2.group_files")
            | "Write"
            >> beam.ParDo(
                _WriteTaskFile(
                    self.out_dir,
                    self.schema,
                    self.settings,
                    self.emit_kept,
                    self.kept_image_bytes,
                )
            ).with_outputs(KEPT, main="files")
        )
        return outputs
