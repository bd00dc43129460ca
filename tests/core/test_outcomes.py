"""Phase-1 outcomes: resumed on the worker from the task's done marker, folded into one summary
(curate.build.phase1, curate.build.outcomes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from curate.build.outcomes import empty_summary, merge, summary_of
from curate.build.plan import task_file


def outcome(task: str, source: str, kept: int, *, resumed: bool = False) -> dict[str, Any]:
    return {
        "task_id": task,
        "source": source,
        "units": 2,
        "units_failed": 1,
        "unit_error_reasons": {"missing_file": 1},
        "candidates": kept + 1,
        "read_rejects": {"image_missing": 1},
        "read_record_errors": {},
        "stages": {
            "rules": {
                "in": kept,
                "out": kept,
                "produced": kept,
                "rejected": 0,
                "errors": 0,
                "reject_reasons": {},
                "error_reasons": {},
            }
        },
        "kept": kept,
        "timings": [
            {
                "stage": "read",
                "wall_s": 0.5,
                "cpu_s": 0.25,
                "records_in": 2,
                "records_out": kept,
                "bytes_read": 100,
                "bytes_written": None,
            },
            {
                "stage": "write",
                "wall_s": 0.1,
                "cpu_s": 0.05,
                "records_in": kept,
                "records_out": kept,
                "bytes_read": None,
                "bytes_written": 40,
            },
        ],
        "resumed": resumed,
    }


def test_summary_sums_counts_per_source_and_stage() -> None:
    parts = [outcome("a1", "a", 3), outcome("a2", "a", 4, resumed=True), outcome("b1", "b", 5)]
    total = empty_summary()
    for part in parts:
        total = merge(total, summary_of(part))
    assert (total["tasks"], total["resumed"], total["ran"]) == (3, 1, 2)
    a = total["sources"]["a"]
    assert (a["units"], a["kept"], a["candidates"]) == (4, 7, 9)
    assert a["unit_error_reasons"] == {"missing_file": 2}
    assert a["stages"]["rules"]["in"] == 7 and a["bytes_read"] == 200
    assert list(total["timings"]) == ["read", "write"]
    assert total["timings"]["read"]["tasks_timed"] == 3
    assert total["timings"]["read"]["wall_us"] == 1_500_000
    assert total["timings"]["read"]["bytes_read"] == 300
    assert total["timings"]["write"]["bytes_read"] is None
    # folding is associative: workers combine in any order
    reordered = merge(summary_of(parts[2]), merge(summary_of(parts[0]), summary_of(parts[1])))
    assert reordered["sources"] == total["sources"]


def test_a_finished_task_is_resumed_on_the_worker(tmp_path: Path) -> None:
    from curate.build.phase1 import RunTaskDoFn

    stored = outcome("t1", "a", 3)
    marker = Path(task_file(str(tmp_path), "t1", "done.json"))
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps(stored))
    fn = RunTaskDoFn({}, str(tmp_path), {})

    def must_not_run(task: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a finished task ran again")

    fn.runner.run = must_not_run  # type: ignore[method-assign]
    (result,) = fn.process({"task_id": "t1", "source": "a", "units": []})
    assert result["resumed"] is True and result["kept"] == 3
    with pytest.raises(AssertionError, match="ran again"):
        list(fn.process({"task_id": "t2", "source": "a", "units": []}))
