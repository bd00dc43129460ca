"""Phase-1 task outcomes folded into one summary on workers, so the driver reads one file
(`_work/phase1_summary.json`), never one marker per task.

A summary is plain JSON whose numbers add up under `merge`: task counts, per-source unit and
record counts (stage counts included) and per-stage timings. Folding is associative, so Beam
combines it in any order across workers.
"""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam

from curate import fs
from curate.shards import layout

SUMMARY = "phase1_summary.json"
_SOURCE_COUNTS = ("units", "units_failed", "candidates", "kept")
_SOURCE_REASONS = ("unit_error_reasons", "read_rejects", "read_record_errors")


def summary_path(out_dir: str) -> str:
    return fs.join(out_dir, layout.WORK, SUMMARY)


def empty_summary() -> dict[str, Any]:
    return {"tasks": 0, "resumed": 0, "ran": 0, "sources": {}, "timings": {}}


def summary_of(outcome: dict[str, Any]) -> dict[str, Any]:
    """One task's outcome (its done.json, plus whether this run resumed it) as a summary."""
    resumed = bool(outcome.get("resumed"))
    source: dict[str, Any] = {key: outcome[key] for key in (*_SOURCE_COUNTS, *_SOURCE_REASONS)}
    source["record_warnings"] = outcome.get("record_warnings") or {}  # absent in older markers
    source["stages"] = outcome["stages"]
    source["cpu_us"] = 0
    source["bytes_read"] = 0
    timings: dict[str, Any] = {}
    for entry in outcome.get("timings") or []:
        source["cpu_us"] += micros(entry["cpu_s"])
        if entry["stage"] == "read":
            source["bytes_read"] += entry.get("bytes_read") or 0
        timing = {k: v for k, v in entry.items() if k not in ("stage", "wall_s", "cpu_s")}
        timings[entry["stage"]] = {
            **timing,
            "wall_us": micros(entry["wall_s"]),
            "cpu_us": micros(entry["cpu_s"]),
            "tasks_timed": 1,
        }
    return {
        "tasks": 1,
        "resumed": int(resumed),
        "ran": int(not resumed),
        "sources": {outcome["source"]: source},
        "timings": timings,
    }


def micros(seconds: float) -> int:
    """Seconds as whole microseconds: integer sums do not depend on the order workers fold."""
    return round(seconds * 1_000_000)


def _add(a: Any, b: Any) -> Any:
    """Numbers add, dicts merge key by key (a's keys first), None is nothing."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict):
        merged = dict(a)
        for key, value in b.items():
            merged[key] = _add(merged.get(key), value)
        return merged
    return a + b


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = _add(a, b)
    return merged


class SummariseOutcomes(beam.CombineFn):
    def create_accumulator(self) -> dict[str, Any]:
        return empty_summary()

    def add_input(self, summary: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
        return merge(summary, summary_of(outcome))

    def merge_accumulators(self, summaries: Any) -> dict[str, Any]:
        total = empty_summary()
        for summary in summaries:
            total = merge(total, summary)
        return total

    def extract_output(self, summary: dict[str, Any]) -> dict[str, Any]:
        return summary


def write_summary(summary: dict[str, Any], out_dir: str) -> None:
    fs.write_bytes_atomic(summary_path(out_dir), json.dumps(summary, sort_keys=False).encode())


class WriteSummary(beam.PTransform):
    """Outcomes -> `_work/phase1_summary.json`."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir

    def expand(self, outcomes: Any) -> Any:
        return (
            outcomes
            | "Fold" >> beam.CombineGlobally(SummariseOutcomes())
            | "Write" >> beam.Map(write_summary, self.out_dir)
        )


def read_summary(out_dir: str) -> dict[str, Any]:
    return json.loads(fs.read_bytes(summary_path(out_dir)))
