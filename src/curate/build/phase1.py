"""Phase 1: one task = a few units of one source, read -> rules -> enrich, written atomically.

`TaskRunner` is engine-free (tests call it directly); `RunTaskDoFn` is its Beam wrapper and
`Phase1` the transform from the plan's task files to task outcomes. Each task writes
`_work/tasks/<task_id>/{kept,rejects,errors}.parquet`, then a `done.json` marker with its counts
and timings, so a rerun skips finished tasks (the datatrove/Dolma pattern) and the manifest
still knows where the time of every task went.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from curate import fs
from curate.build.plan import read_part, task_file
from curate.build.timings import file_size
from curate.schema import ERROR_SCHEMA, load_schema, reject_schema
from curate.shards.writer import write_parquet
from curate.sources.base import Source, Unit, get_source_class
from curate.sources.uris import relative_uri, relativise_record, relativise_text
from curate.spec import Spec
from curate.split import resolve_split
from curate.stages import ChainResult, Failed, Rejected, Stage, StageCounts, run_chain
from curate.timing import StageTiming, Stopwatch

log = logging.getLogger("curate.build")


TASK_FILES = ("kept.parquet", "rejects.parquet", "errors.parquet")
NEAR_FILE = "near.parquet"  # near-dup attributes of the kept records, when near dedup is on


def phase1_stages(spec: Spec) -> list[Stage]:
    """Per-record stages after reading: the rule chains, then enrichment."""
    from curate.enrich.modality import ModalityTagger
    from curate.rules.files import load_rule_chain

    stages: list[Stage] = [load_rule_chain(ref) for ref in spec.rules]
    if spec.enrich.modality:
        stages.append(ModalityTagger())
    link = spec.enrich.link
    if link is not None and link.enabled:
        from curate.enrich.link.stage import LinkStage

        stages.append(LinkStage(link))
    return stages


@dataclass
class TaskOutcome:
    task_id: str
    source: str
    units: int = 0
    units_failed: int = 0
    unit_error_reasons: Counter = field(default_factory=Counter)
    candidates: int = 0
    read_rejects: Counter = field(default_factory=Counter)
    read_record_errors: Counter = field(default_factory=Counter)
    # warnings records carry (`preprocess_warnings`, e.g. padding_above_limit): the card shows them
    record_warnings: Counter = field(default_factory=Counter)
    stages: dict[str, StageCounts] = field(default_factory=dict)
    kept: int = 0
    # read, each chain stage, write: in run order (a list, since done.json sorts its keys)
    timings: list[StageTiming] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "source": self.source,
            "units": self.units,
            "units_failed": self.units_failed,
            "unit_error_reasons": dict(self.unit_error_reasons),
            "candidates": self.candidates,
            "read_rejects": dict(self.read_rejects),
            "read_record_errors": dict(self.read_record_errors),
            "record_warnings": dict(self.record_warnings),
            "stages": {name: c.as_dict() for name, c in self.stages.items()},
            "kept": self.kept,
            "timings": [t.as_dict() for t in self.timings],
        }


class TaskRunner:
    """Runs phase-1 tasks: read every unit, apply the per-record stages, write the task files."""

    def __init__(
        self, spec_data: dict[str, Any], out_dir: str, source_paths: dict[str, str]
    ) -> None:
        self.spec_data = spec_data
        self.out_dir = out_dir
        self.source_paths = source_paths  # label -> resolved path (demo inputs materialised)
        self._ready = False

    def setup(self) -> None:
        if self._ready:
            return
        self.spec = Spec.model_validate(self.spec_data)
        self.schema = load_schema(self.spec.schema_)
        self.sources: dict[str, Source] = {}
        self.group_fields: dict[str, str | None] = {}
        for source_spec in self.spec.sources:
            cls = get_source_class(source_spec.kind)
            self.sources[source_spec.label] = cls(
                self.source_paths[source_spec.label],
                source_spec.options,
                schema_ref=self.spec.schema_ if cls.schema_ref else None,
            )
            self.group_fields[source_spec.label] = self.spec.split.group_by or cls.group_field
        self.stages = phase1_stages(self.spec)
        near = self.spec.dedup.near
        # Near-dup attributes are per-record work: computed here, beside the read, once.
        self.near = near if near is not None and near.enabled else None
        for stage in self.stages:
            stage.setup()
        self._ready = True

    def task_dir(self, task_id: str) -> str:
        return task_file(self.out_dir, task_id)

    def _with_split(self, record: dict[str, Any], source: str) -> dict[str, Any]:
        if not record.get("split"):  # a preset split (an official split file) wins
            record["split"] = resolve_split(
                record,
                self.group_fields[source],
                self.spec.split.seed,
                self.spec.split.ratios,
                fallback_key=f"unit:{record.get('unit_id')}",
            )
        return record

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        label = task["source"]
        outcome = TaskOutcome(task_id=task["task_id"], source=label)
        records: list[dict[str, Any]] = []
        start = ChainResult(rejected=[], failed=[])
        read = StageTiming("read", bytes_read=0)
        for unit_dict in task["units"]:
            self._timed_read(Unit.from_dict(unit_dict), label, outcome, records, start, read)
        read.records_out = len(records)
        result = run_chain(self.stages, records, result=start)
        self._relativise(result, self.source_paths[label])
        outcome.stages = result.counts
        outcome.kept = len(result.kept)
        near_rows, near_timing = self._near_attributes(result.kept)
        write = self._write(task["task_id"], result, near_rows)
        outcome.timings = [read, *result.timings.values(), *near_timing, write]
        self._mark_done(task["task_id"], outcome)
        return outcome.as_dict()

    @staticmethod
    def _relativise(result: ChainResult, root: str) -> None:
        """Stored URIs relative to the source root, so outputs do not depend on where it is."""
        for record in result.kept:
            relativise_record(record, root)
        for rejected in result.rejected:
            relativise_record(rejected.record, root)
        for failed in result.failed:
            failed.source_uri = relative_uri(failed.source_uri, root) or failed.source_uri
            failed.message = relativise_text(failed.message, root)

    def _timed_read(
        self,
        unit: Unit,
        label: str,
        outcome: TaskOutcome,
        records: list[dict[str, Any]],
        result: ChainResult,
        timing: StageTiming,
    ) -> None:
        """`_read_unit`, adding its time and the bytes it read through `curate.fs` to `timing`
        (`records_in` counts units here)."""
        before = fs.bytes_read_by_this_thread()
        with Stopwatch() as watch:
            self._read_unit(unit, label, outcome, records, result)
        timing.add_time(watch)
        timing.add_bytes(read=fs.bytes_read_by_this_thread() - before)
        timing.records_in += 1

    def _read_unit(
        self,
        unit: Unit,
        label: str,
        outcome: TaskOutcome,
        records: list[dict[str, Any]],
        result: ChainResult,
    ) -> None:
        """Read one unit into `records`; its rejects and failures go to `result`."""
        outcome.units += 1
        source = self.sources[label]
        try:
            items = list(source.read_published(unit))
        except Exception as exc:  # noqa: BLE001 - one bad unit is a dead letter
            failure = source.publish(
                Failed.from_exception(exc, stage="read", source_uri=unit.uri, unit_id=unit.unit_id),
                unit,
            )
            result.failed.append(failure)
            outcome.units_failed += 1
            outcome.unit_error_reasons[failure.reason] += 1
            return
        for item in items:
            outcome.candidates += 1
            if isinstance(item, Rejected):
                item.stage = item.stage or "read"
                outcome.read_rejects[item.reason] += 1
                result.rejected.append(item)
            elif isinstance(item, Failed):
                item.unit_id = item.unit_id or unit.unit_id
                outcome.read_record_errors[item.reason] += 1
                result.failed.append(item)
            else:
                outcome.record_warnings.update(item.get("preprocess_warnings") or ())
                records.append(self._with_split(item, label))

    def _near_attributes(
        self, kept: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]] | None, list[StageTiming]]:
        """The near-dup sidecar rows of the kept records (image hashes, caption MinHash)."""
        if self.near is None:
            return None, []
        from curate.dedup.sidecar import near_sidecar_rows

        timing = StageTiming("near_attributes", records_in=len(kept), records_out=len(kept))
        with Stopwatch() as watch:
            rows = near_sidecar_rows(kept, self.near)
        timing.add_time(watch)
        return rows, [timing]

    def _write(
        self, task_id: str, result: ChainResult, near_rows: list[dict[str, Any]] | None
    ) -> StageTiming:
        """The task files; their rows and sizes are the write step's records and bytes."""
        rows = len(result.kept) + len(result.rejected) + len(result.failed)
        timing = StageTiming("write", records_in=rows, records_out=rows)
        with Stopwatch() as watch:
            self._write_files(task_id, result)
            if near_rows is not None:
                self._write_near(task_id, near_rows)
        timing.add_time(watch)
        folder = self.task_dir(task_id)
        names = (*TASK_FILES, NEAR_FILE) if near_rows is not None else TASK_FILES
        timing.add_bytes(written=sum(file_size(fs.join(folder, name)) for name in names))
        return timing

    def _write_near(self, task_id: str, rows: list[dict[str, Any]]) -> None:
        from curate.dedup.sidecar import near_sidecar_schema

        assert self.near is not None
        write_parquet(
            fs.join(self.task_dir(task_id), NEAR_FILE),
            rows,
            near_sidecar_schema(self.near),
            compression=self.spec.output.compression,
        )

    def _write_files(self, task_id: str, result: ChainResult) -> None:
        folder = self.task_dir(task_id)
        out = self.spec.output
        write_parquet(
            fs.join(folder, "kept.parquet"),
            result.kept,
            self.schema.arrow,
            compression=out.compression,
            row_group_rows=out.row_group_rows,
        )
        write_parquet(
            fs.join(folder, "rejects.parquet"),
            [r.as_row() for r in result.rejected],
            reject_schema(self.schema),
            compression=out.compression,
            row_group_rows=out.row_group_rows,
        )
        write_parquet(
            fs.join(folder, "errors.parquet"),
            [f.as_row() for f in result.failed],
            ERROR_SCHEMA,
            compression=out.compression,
        )

    def _mark_done(self, task_id: str, outcome: TaskOutcome) -> None:
        # The marker comes last: its presence means the three task files are complete.
        fs.write_bytes_atomic(
            fs.join(self.task_dir(task_id), "done.json"),
            json.dumps(outcome.as_dict(), sort_keys=True).encode(),
        )


# Test hook: simulate a build killed part-way (the process dies like `kill -9` after N tasks).
CRASH_AFTER_TASKS_ENV = "CURATE_CRASH_AFTER_TASKS"
_tasks_finished_here = 0


def _maybe_crash() -> None:
    global _tasks_finished_here
    _tasks_finished_here += 1
    limit = os.environ.get(CRASH_AFTER_TASKS_ENV)
    if limit and _tasks_finished_here >= int(limit):
        os._exit(137)


class RunTaskDoFn(beam.DoFn):
    """Task -> its outcome; a task whose done marker exists is not run again (resume), its
    stored outcome is read back here, on the worker, so the driver never checks tasks."""

    def __init__(
        self, spec_data: dict[str, Any], out_dir: str, source_paths: dict[str, str]
    ) -> None:
        # Set up on the first task it runs: a resumed build may need no source, model or KB.
        self.runner = TaskRunner(spec_data, out_dir, source_paths)

    def process(self, task: dict[str, Any]) -> Iterator[dict[str, Any]]:
        marker = task_file(self.runner.out_dir, task["task_id"], "done.json")
        if fs.exists(marker):
            yield {**json.loads(fs.read_bytes(marker)), "resumed": True}
            return
        outcome = self.runner.run(task)
        _maybe_crash()
        yield {**outcome, "resumed": False}


class Phase1(beam.PTransform):
    """Task files of the plan -> task outcomes (every task's files written or resumed)."""

    def __init__(
        self, spec_data: dict[str, Any], out_dir: str, source_paths: dict[str, str]
    ) -> None:
        super().__init__()
        self.spec_data, self.out_dir, self.source_paths = spec_data, out_dir, source_paths

    def expand(self, task_files: Any) -> Any:
        return (
            task_files
            | "ReadTasks" >> beam.FlatMap(read_part, "task")
            | "Distribute" >> beam.Reshuffle()
            | "ReadRulesEnrich"
            >> beam.ParDo(RunTaskDoFn(self.spec_data, self.out_dir, self.source_paths))
        )
