"""The manifest's `timings`: where a build's time went, stage by stage.

    driver phases   wall and CPU of prepare, inputs, discover, phase 1, phase 2, manifest, card
    phase 1         per-task timings (each task's `done.json`), summed per stage on workers
    phase 2         Beam metrics (namespace `curate.phase2`) of the main steps, summed over workers

Phase-2 steps report counters named `<step>.<field>`; `Phase2Step` is the one place that writes
them and `phase2_steps` the one place that reads them back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from curate import fs
from curate.timing import PhaseClock, StageTiming

PHASE2_NAMESPACE = "curate.phase2"
# Display order of the phase-2 steps (steps a spec does not run report nothing).
PHASE2_STEPS = (
    "read_compact",
    "exact_caption_image",
    "exact_image",
    "read_full",
    "read_near",
    "dedup:near",
    "quality",
    "decontaminate",
    "decisions",
    "write_shards",
    "write_rejects",
    "read_errors",
)
_INT_FIELDS = ("records_in", "records_out", "bytes_read", "bytes_written", "files", "drops")

NOTES = (
    "wall_s/cpu_s of phase-1 stages are sums over tasks (tasks run in parallel, so they can "
    "exceed the phase's wall time); cpu_s is the worker process's CPU (time.process_time).",
    "read: records_in counts units; bytes_read is what the source read through curate.fs.",
    "write (phase 1): the task files kept/rejects/errors.parquet.",
    "a resumed task keeps the timings of the run that did it (tasks_timed per stage counts the "
    "tasks whose done.json carries timings).",
    "driver phases: cpu_s is the driver process only; cpu_children_s adds worker processes that "
    "have exited (local multi-processing). Remote workers (Dataflow) are in neither: the "
    "per-task and per-step CPU covers their work.",
    "phase-2 steps come from Beam metrics; their wall/cpu cover the step's own function only "
    "(shuffles and the dedup transforms' internals are in the phase-2 total); the bytes each "
    "shuffle moved are the manifest's `shuffle`.",
)


def file_size(path: str) -> int:
    if fs.is_local(path):
        return os.path.getsize(path)
    return int(FileSystems.match([path])[0].metadata_list[0].size_in_bytes)


def parquet_bytes_read(path: str, columns: list[str]) -> int:
    """Compressed bytes of the column chunks a local columnar read touches; a remote read
    fetches the whole file."""
    if not fs.is_local(path):
        return file_size(path)
    metadata = pq.ParquetFile(path).metadata
    wanted = set(columns)
    total = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            if chunk.path_in_schema.split(".")[0] in wanted:
                total += chunk.total_compressed_size
    return total


# ---- phase 2: Beam metrics ---------------------------------------------------------------------


class Phase2Step:
    """Counters of one phase-2 step: `count(field, n)` and a `timed()` block (wall/CPU in µs)."""

    def __init__(self, step: str) -> None:
        self.step = step  # only the name: steps travel pickled inside the transforms

    def count(self, field: str, n: int = 1) -> None:
        Metrics.counter(PHASE2_NAMESPACE, f"{self.step}.{field}").inc(n)

    @contextmanager
    def timed(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.count("wall_us", int((time.perf_counter() - wall) * 1e6))
            self.count("cpu_us", int((time.process_time() - cpu) * 1e6))


def _counter_values(metrics: Any) -> Iterable[tuple[str, int]]:
    from apache_beam.metrics.metric import MetricsFilter

    query = metrics.query(MetricsFilter().with_namespace(PHASE2_NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        yield counter.key.metric.name, int(value or 0)


def phase2_steps(metrics: Any) -> list[dict[str, Any]]:
    """One row per phase-2 step that reported, in PHASE2_STEPS order (others after, sorted)."""
    if metrics is None:
        return []
    steps: dict[str, dict[str, int]] = {}
    for name, value in _counter_values(metrics):
        step, _, field = name.rpartition(".")
        fields = steps.setdefault(step, {})
        fields[field] = fields.get(field, 0) + value  # one result per transform using the name
    order = {name: i for i, name in enumerate(PHASE2_STEPS)}
    rows = []
    for step in sorted(steps, key=lambda s: (order.get(s, len(order)), s)):
        fields = steps[step]
        row: dict[str, Any] = {"stage": step}
        if "wall_us" in fields:
            row["wall_s"] = round(fields["wall_us"] / 1e6, 6)
            row["cpu_s"] = round(fields.get("cpu_us", 0) / 1e6, 6)
        row.update({f: fields[f] for f in _INT_FIELDS if f in fields})
        if "records_in" in row and "records_out" not in row:
            row["records_out"] = row["records_in"] - row.get("drops", 0)
        rows.append(row)
    return rows


# ---- phase 1: fold the task markers ------------------------------------------------------------


def fold_phase1(summary: dict[str, Any]) -> dict[str, Any]:
    """Per-stage sums over the tasks' timings, in run order, with how many tasks were timed."""
    stages = []
    for name, entry in summary["timings"].items():
        seconds = {"wall_s": entry["wall_us"] / 1e6, "cpu_s": entry["cpu_us"] / 1e6}
        timing = StageTiming.from_dict({"stage": name, **entry, **seconds})
        stages.append({**timing.as_dict(), "tasks_timed": entry["tasks_timed"]})
    return {"tasks_total": summary["tasks"], "stages": stages}


def per_source(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Units, candidate and kept records and phase-1 CPU per source: what `curate plan` scales."""
    return {
        label: {
            "units": counts["units"],
            "candidates": counts["candidates"],
            "kept_phase1": counts["kept"],
            "cpu_s": counts["cpu_us"] / 1e6,
            "bytes_read": counts["bytes_read"],
        }
        for label, counts in sorted(summary["sources"].items())
    }


def output_bytes(files: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows, files and bytes of the build's outputs per top folder (shards, rejects, ...)."""
    tables: dict[str, dict[str, int]] = {}
    for entry in files:
        table = entry["path"].split("/", 1)[0]
        row = tables.setdefault(table, {"files": 0, "rows": 0, "bytes": 0})
        row["files"] += 1
        row["rows"] += entry["rows"]
        row["bytes"] += entry.get("bytes", 0)
    return dict(sorted(tables.items()))


def timings_section(
    summary: dict[str, Any],
    phases: list[PhaseClock],
    phase2_metrics: Any,
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "phases": [p.as_dict() for p in phases],
        "phase1": fold_phase1(summary),
        "phase2": {"steps": phase2_steps(phase2_metrics)},
        "sources": per_source(summary),
        "outputs": output_bytes(files),
        "notes": list(NOTES),
    }
