"""Which output file each phase-1 task's rows go to: whole tasks packed in task order.

Phase 2 never shuffles full records: it plans, from compact counts, which tasks feed which
output file, and each file's writer reads its tasks' Parquet files itself. Packing whole tasks
in task-id order keeps each task file read once per output table and split, and makes the
layout a pure function of the counts (reproducible however the runner delivers the rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FileKey = tuple[str, int, int]  # (split or "", file index, files in that split/table)


def pack_tasks(rows_per_task: Mapping[str, int], target_rows: int) -> list[list[str]]:
    """Consecutive tasks (sorted by id, empty ones left out) grouped into files of about
    `target_rows` rows: a file is closed once it holds at least `target_rows` rows, so a file
    exceeds the target by less than one task's rows."""
    files: list[list[str]] = []
    current: list[str] = []
    rows = 0
    for task_id in sorted(t for t, n in rows_per_task.items() if n > 0):
        current.append(task_id)
        rows += rows_per_task[task_id]
        if rows >= target_rows:
            files.append(current)
            current, rows = [], 0
    if current:
        files.append(current)
    return files


def file_of_task(
    counts: Iterable[tuple[str, str, int]], target_rows: int
) -> dict[tuple[str, str], FileKey]:
    """(group, task_id) -> (group, index, total) for (group, task_id, rows) counts, where a
    group is a split (shards) or "" (a flat table such as rejects)."""
    by_group: dict[str, dict[str, int]] = {}
    for group, task_id, rows in counts:
        per_task = by_group.setdefault(group, {})
        per_task[task_id] = per_task.get(task_id, 0) + rows
    layout: dict[tuple[str, str], FileKey] = {}
    for group, per_task in sorted(by_group.items()):
        files = pack_tasks(per_task, target_rows)
        for index, task_ids in enumerate(files):
            for task_id in task_ids:
                layout[(group, task_id)] = (group, index, len(files))
    return layout
