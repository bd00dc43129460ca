"""Where the time went: wall and CPU seconds, records in/out and bytes, per stage.

Engine-free (the pure chain in `stages.py` times itself with it); the build folds these into
the manifest's `timings` and `curate plan` turns them into cost per record.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class StageTiming:
    """One stage's totals. A byte count is None when the stage cannot know it (never a guess)."""

    stage: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    records_in: int = 0
    records_out: int = 0
    bytes_read: int | None = None
    bytes_written: int | None = None

    def add_time(self, watch: Stopwatch) -> None:
        self.wall_s += watch.wall_s
        self.cpu_s += watch.cpu_s

    def add_bytes(self, *, read: int | None = None, written: int | None = None) -> None:
        if read is not None:
            self.bytes_read = (self.bytes_read or 0) + read
        if written is not None:
            self.bytes_written = (self.bytes_written or 0) + written

    def merge(self, other: StageTiming) -> None:
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.add_bytes(read=other.bytes_read, written=other.bytes_written)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "wall_s": round(self.wall_s, 6),
            "cpu_s": round(self.cpu_s, 6),
            "records_in": self.records_in,
            "records_out": self.records_out,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageTiming:
        return cls(
            stage=data["stage"],
            wall_s=data["wall_s"],
            cpu_s=data["cpu_s"],
            records_in=data["records_in"],
            records_out=data["records_out"],
            bytes_read=data.get("bytes_read"),
            bytes_written=data.get("bytes_written"),
        )


class Stopwatch:
    """Wall (`perf_counter`) and CPU (`process_time`) seconds of a `with` block.

    `process_time` is this process's CPU, helper threads (Arrow, torch) included: exact when a
    process runs one bundle at a time (local in_memory and multi_processing); where it runs
    several bundles in threads (multi_threading, Dataflow's Python workers) it counts theirs
    too, so per-stage CPU is an upper bound there.
    """

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu


class PhaseClock:
    """Wall and CPU of a driver phase, CPU of finished child processes included.

    Local multi-processing workers are child processes: their CPU reaches `os.times()` only once
    they have exited and been waited for, so `cpu_children_s` may be 0 while a pool lives on; the
    per-task CPU of phase 1 covers that work either way.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.cpu_children_s = 0.0

    def __enter__(self) -> PhaseClock:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._children = _children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu
        self.cpu_children_s = max(0.0, _children_cpu() - self._children)

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "wall_s": round(self.wall_s, 6),
            "cpu_s": round(self.cpu_s, 6),
            "cpu_children_s": round(self.cpu_children_s, 6),
        }


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system
