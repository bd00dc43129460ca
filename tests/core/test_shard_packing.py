"""Whole tasks packed into output files in task order (curate.shards.packing)."""

from __future__ import annotations

from curate.shards.packing import file_of_task, pack_tasks


def test_files_close_once_they_reach_the_target() -> None:
    rows = {"t3": 2, "t1": 5, "t2": 4, "t4": 0, "t5": 9}
    assert pack_tasks(rows, 6) == [["t1", "t2"], ["t3", "t5"]]
    assert pack_tasks(rows, 1) == [["t1"], ["t2"], ["t3"], ["t5"]]
    assert pack_tasks(rows, 100) == [["t1", "t2", "t3", "t5"]]
    assert pack_tasks({}, 5) == []


def test_layout_is_per_group_and_independent_of_input_order() -> None:
    counts = [("train", "b", 3), ("train", "a", 3), ("test", "a", 1), ("", "a", 2), ("", "b", 0)]
    expected = {
        ("train", "a"): ("train", 0, 2),
        ("train", "b"): ("train", 1, 2),
        ("test", "a"): ("test", 0, 1),
        ("", "a"): ("", 0, 1),
    }
    assert file_of_task(counts, 3) == expected
    assert file_of_task(list(reversed(counts)), 3) == expected
