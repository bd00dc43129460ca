"""Phase 1: one task = a few units of one source, read -> rules -> enrich, written atomically.

`TaskRunner` is engine-free (tests call it directly); `RunTaskDoFn` is its Beam wrapper. Each
task writes `_work/tasks/<task_id>/{kept,rejects,errors}.parquet`, then a `done.json` marker
with its counts and timings, so a rerun skips finished tasks (the datatrove/Dolma pattern) and
the manifest still knows where the time of every task went.
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
from curate.build.plan import task_file
from curate.build.timings import file_size
from curate.schema import ERROR_SCHEMA, load_schema, reject_schema
from curate.shards import layout
from curate.shards.writer import write_parquet
from curate.sources.base import Source, Unit, get_source_class
from curate.sources.uris import relative_uri, relativise_record, relativise_text
from curate.spec import Spec
from curate.split import resolve_split
from curate.stages import ChainResult, Failed, Rejected, Stage, StageCounts, run_chain
from curate.timing import StageTiming, Stopwatch

log = logging.getLogger("curate.build")


TASK_FILES = ("kept.parquet", "rejects.parquet", "errors.parquet")


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
                self.source_paths[source_spec.label], source_spec.options
            )
            self.group_fields[source_spec.label] = self.spec.split.group_by or cls.group_field
        self.stages = phase1_stages(self.spec)
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
        write = self._write(task["task_id"], result)
        outcome.timings = [read, *result.timings.values(), write]
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
        try:
            items = list(self.sources[label].read(unit))
        except Exception as exc:  # noqa: BLE001 - one bad unit is a dead letter
            failure = Failed.from_exception(
                exc, stage="read", source_uri=unit.uri, unit_id=unit.unit_id
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
                records.append(self._with_split(item, label))

    def _write(self, task_id: str, result: ChainResult) -> StageTiming:
        """The three task files; their rows and sizes are the write step's records and bytes."""
        rows = len(result.kept) + len(result.rejected) + len(result.failed)
        timing = StageTiming("write", records_in=rows, records_out=rows)
        with Stopwatch() as watch:
            self._write_files(task_id, result)
        timing.add_time(watch)
        folder = self.task_dir(task_id)
        timing.add_bytes(written=sum(file_size(fs.join(folder, name)) for name in TASK_FILES))
        return timing

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
    def __init__(
        self, spec_data: dict[str, Any], out_dir: str, source_paths: dict[str, str]
    ) -> None:
        self.runner = TaskRunner(spec_data, out_dir, source_paths)

    def setup(self) -> None:
        self.runner.setup()

    def process(self, task: dict[str, Any]) -> Iterator[dict[str, Any]]:
        outcome = self.runner.run(task)
        _maybe_crash()
        yield outcome


def finished_tasks(out_dir: str) -> set[str]:
    """Ids of the tasks whose done marker exists: one listing of the task folder, not one
    existence check per task (tens of thousands of requests on an object store)."""
    pattern = fs.join(out_dir, layout.WORK, "tasks", "*", "done.json")
    return {path.replace("\\", "/").rsplit("/", 2)[-2] for path in fs.glob(pattern)}


def run_phase1(
    tasks: list[dict[str, Any]],
    spec_data: dict[str, Any],
    out_dir: str,
    paths: dict[str, str],
    runner: Any,
) -> tuple[int, int]:
    """Run every task without a done marker; returns (resumed, ran)."""
    done_ids = finished_tasks(out_dir) & {t["task_id"] for t in tasks}
    pending = [t for t in tasks if t["task_id"] not in done_ids]
    log.info(
        "phase 1: %d tasks, %d already done, %d to run", len(tasks), len(done_ids), len(pending)
    )
    if pending:
        beam_runner, options = runner.make()
        with beam.Pipeline(runner=beam_runner, options=options) as pipeline:
            _ = (
                pipeline
                | "PendingTasks" >> beam.Create(pending, reshuffle=False)
                | "Distribute" >> beam.Reshuffle()
                | "ReadRulesEnrich" >> beam.ParDo(RunTaskDoFn(spec_data, out_dir, paths))
            )
    return len(done_ids), len(pending)
