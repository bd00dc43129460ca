"""Resume finds finished tasks with one listing of the work folder (curate.build.phase1)."""

from __future__ import annotations

from pathlib import Path


def test_finished_tasks_come_from_one_listing(tmp_path: Path) -> None:
    from curate.build.phase1 import finished_tasks

    assert finished_tasks(str(tmp_path / "nothing_yet")) == set()
    for task_id, done in (("a-000000-x", True), ("a-000001-y", False), ("b-000000-z", True)):
        folder = tmp_path / "_work" / "tasks" / task_id
        folder.mkdir(parents=True)
        (folder / "kept.parquet").write_bytes(b"")
        if done:
            (folder / "done.json").write_text("{}")
    assert finished_tasks(str(tmp_path)) == {"a-000000-x", "b-000000-z"}
