"""Resume and manifest at 10,000 and 40,000 tasks: the driver's time against the number of tasks.

Baseline: the per-task driver of earlier versions (one listing of every task's done marker to
resume, then one read per task to fold the manifest's phase-1 counts). Today the driver reads two
aggregate files (the plan's stats.json and phase 1's summary, folded by the pipeline on workers)
whatever the number of tasks; the workers' side (reading each task's marker to resume it and
folding the outcomes in Beam) is timed separately, since it spreads over workers.

    .venv/bin/python benchmarks/bench_resume_manifest.py [--tasks 10000 40000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SOURCE = "pmc"


def outcome(task_id: str, index: int) -> dict[str, Any]:
    kept = 20 + index % 7
    counts = {"in": kept + 2, "out": kept, "produced": kept, "rejected": 2, "errors": 0}
    return {
        "task_id": task_id,
        "source": SOURCE,
        "units": 16,
        "units_failed": index % 3 == 0,
        "unit_error_reasons": {"malformed_xml": 1} if index % 3 == 0 else {},
        "candidates": kept + 3,
        "read_rejects": {"image_missing": 1},
        "read_record_errors": {},
        "stages": {
            "pmc_figures.v1": {
                **counts,
                "reject_reasons": {"caption_too_short": 2},
                "error_reasons": {},
            }
        },
        "kept": kept,
        "timings": [
            {
                "stage": s,
                "wall_s": 0.01,
                "cpu_s": 0.01,
                "records_in": kept,
                "records_out": kept,
                "bytes_read": 1000 if s == "read" else None,
                "bytes_written": None,
            }
            for s in ("read", "pmc_figures.v1", "write")
        ],
    }


def make_build_folder(out: Path, tasks: int) -> list[str]:
    """A build folder after phase 1: task markers plus the two aggregate files."""
    from curate.build.outcomes import empty_summary, merge, summary_of, write_summary
    from curate.build.plan import STATS, plan_file, task_file

    ids = [f"{SOURCE}-00000-{i:06d}-0123456789" for i in range(tasks)]
    summary = empty_summary()
    for index, task_id in enumerate(ids):
        marker = Path(task_file(str(out), task_id, "done.json"))
        marker.parent.mkdir(parents=True)
        data = outcome(task_id, index)
        marker.write_text(json.dumps(data))
        summary = merge(summary, summary_of(data))
    write_summary(summary, str(out))
    stats = {
        "sources": {
            SOURCE: {
                "kind": "pmc",
                "path": "/in",
                "discovered": tasks * 16,
                "skipped": {},
                "active": tasks * 16,
                "tasks": tasks,
            }
        },
        "parts": [
            {
                "source": SOURCE,
                "piece": 0,
                "file": "parts/pmc-00000.jsonl",
                "active": tasks * 16,
                "tasks": tasks,
                "discovered": tasks * 16,
                "skipped": {},
            }
        ],
    }
    Path(plan_file(str(out))).mkdir(parents=True)
    Path(plan_file(str(out), STATS)).write_text(json.dumps(stats))
    return ids


def per_task_driver(out: Path) -> tuple[float, int]:
    """Baseline: list the done markers, read every one, fold them (the old driver)."""
    from curate import fs
    from curate.build.outcomes import empty_summary, merge, summary_of

    started = time.perf_counter()
    markers = fs.glob(str(out / "_work" / "tasks" / "*" / "done.json"))
    summary = empty_summary()
    for path in markers:
        summary = merge(summary, summary_of(json.loads(fs.read_bytes(path))))
    return time.perf_counter() - started, summary["sources"][SOURCE]["kept"]


def aggregate_driver(out: Path) -> tuple[float, int]:
    """Today: the plan's stats and phase 1's summary, then the manifest's phase-1 tally."""
    from curate.build.manifest import Phase1Tally
    from curate.build.outcomes import read_summary
    from curate.build.plan import PlanStats

    started = time.perf_counter()
    stats = PlanStats.read(str(out))
    assert stats is not None
    summary = read_summary(str(out))
    tally = Phase1Tally.fold(summary, stats.inputs)
    return time.perf_counter() - started, tally.kept


def worker_side(out: Path, ids: list[str]) -> float:
    """What moved to workers: each task's marker read to resume it, outcomes folded in Beam
    (in-process runner here; spread over workers on a cluster)."""
    import apache_beam as beam

    from curate.build.outcomes import SummariseOutcomes
    from curate.build.phase1 import RunTaskDoFn

    started = time.perf_counter()
    with beam.Pipeline(runner="DirectRunner") as pipeline:
        _ = (
            pipeline
            | beam.Create([{"task_id": t, "source": SOURCE, "units": []} for t in ids])
            | beam.ParDo(RunTaskDoFn({}, str(out), {}))
            | beam.CombineGlobally(SummariseOutcomes())
        )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10_000, 40_000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tasks in args.tasks:
            out = Path(tmp) / f"t{tasks}"
            ids = make_build_folder(out, tasks)
            base_s, base_kept = per_task_driver(out)
            new_s, new_kept = aggregate_driver(out)
            assert base_kept == new_kept, (base_kept, new_kept)
            rows.append((tasks, base_s, new_s, worker_side(out, ids)))
    print("driver time to resume and fold the manifest's phase-1 counts")
    print(
        f"  {'tasks':>7} {'per-task driver s':>18} {'2 aggregate files s':>20} "
        f"{'ratio':>7} {'workers s':>10}"
    )
    for tasks, base_s, new_s, workers_s in rows:
        print(
            f"  {tasks:>7} {base_s:>18.3f} {new_s:>20.4f} {base_s / new_s:>7.0f} {workers_s:>10.1f}"
        )
    (small, small_base, small_new, _), (big, big_base, big_new, _) = rows[0], rows[-1]
    growth_base = big_base / small_base
    growth_new = big_new / small_new
    print(
        f"growth {small} -> {big} tasks: per-task driver x{growth_base:.1f}, "
        f"aggregate-file driver x{growth_new:.1f} (files read: 2 at every size)"
    )
    ok = big_new < 0.5 and growth_new < 2.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
