"""Progress of a build on stderr: one line per driver phase, and during the pipeline the phase-1
tasks done / total, records per second and an ETA.

Progress is read from the build folder, not from the runner: each finished phase-1 task writes
`_work/tasks/<id>/done.json` (with its record counts), wherever the workers run (local
processes, Dataflow, Flink), and Beam's local runner reports metrics only at the end. On a
terminal a tqdm bar is redrawn in place; otherwise (CI, a log file, a remote shell) a plain line
is printed every `interval` seconds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from curate import fs
from curate.shards import layout

INTERVAL_ENV = "CURATE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 15.0
# Without a terminal, phases shorter than this are not announced (their times are in the
# manifest's timings and the card); the rest are.
QUIET_PHASE_S = 2.0


def done_markers(out_dir: str) -> list[str]:
    return fs.glob(fs.join(out_dir, layout.WORK, "tasks", "*", "done.json"))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class TaskCounter:
    """Counts finished tasks and their candidate records from the done markers; each marker is
    read once."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.seen: set[str] = set()
        self.records = 0

    def poll(self) -> tuple[int, int]:
        """(tasks done, candidate records in them) so far."""
        for path in done_markers(self.out_dir):
            if path in self.seen:
                continue
            self.seen.add(path)
            try:
                self.records += int(json.loads(fs.read_bytes(path)).get("candidates", 0))
            except (OSError, ValueError):
                self.seen.discard(path)  # being written: read it on the next poll
        return len(self.seen), self.records


class Progress:
    """What a build prints while it runs. `enabled=False` prints nothing (library use)."""

    def __init__(
        self,
        label: str = "build",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        interactive: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.interactive = isatty if interactive is None else interactive
        self.interval = interval or float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
        self.lines: list[str] = []  # what was printed, for tests and the final summary
        self._pending = ""  # a final task status the enclosing phase's line carries

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"curate {self.label}: {text}"
        self.lines.append(line)
        print(line, file=self.stream, flush=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        took = time.perf_counter() - started
        pending, self._pending = self._pending, ""
        if pending:
            self.say(f"{name} done in {_duration(took)} ({pending})")
        elif self.interactive or took >= QUIET_PHASE_S:
            self.say(f"{name} done in {_duration(took)}")

    @contextmanager
    def tasks(self, out_dir: str, total: int) -> Iterator[None]:
        """Report phase-1 tasks done / total while the body (the pipeline) runs."""
        if not self.enabled or total <= 0:
            yield
            return
        counter = TaskCounter(out_dir)
        resumed, _ = counter.poll()
        counter.records = 0  # the rate counts this run's work only
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(counter, resumed, total, stop), daemon=True
        )
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()

    def _watch(self, counter: TaskCounter, resumed: int, total: int, stop: threading.Event) -> None:
        started = time.perf_counter()
        bar = self._bar(total, resumed)
        # listing an object store costs requests: poll it at the print interval only
        period = self.interval if not fs.is_local(counter.out_dir) else (1.0 if bar else 2.0)
        last_line = started
        last_done = resumed
        while True:
            finished = stop.wait(period)
            done, records = counter.poll()
            elapsed = time.perf_counter() - started
            rate = records / elapsed if elapsed > 0 else 0.0
            status = self.status(done, total, resumed, records, elapsed)
            if bar is not None:
                bar.update(done - bar.n)
                bar.set_postfix_str(f"{rate:.1f} records/s", refresh=True)
            elif done != last_done and time.perf_counter() - last_line >= self.interval:
                self.say(status)
                last_line, last_done = time.perf_counter(), done
            if finished:
                break
        if bar is not None:
            bar.close()
        if bar is None and last_done == resumed:
            self._pending = status  # nothing printed meanwhile: the phase's line says it
        elif done < total or done != last_done:
            self.say(status)

    def _bar(self, total: int, resumed: int) -> Any:
        if not self.interactive:
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=resumed,
            unit="task",
            desc=f"curate {self.label}: phase 1",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    @staticmethod
    def status(done: int, total: int, resumed: int, records: int, elapsed: float) -> str:
        new = done - resumed
        eta = ""
        if new > 0 and done < total:
            eta = f", ETA {_duration(elapsed / new * (total - done))}"
        resumed_note = f" ({resumed} resumed)" if resumed else ""
        rate = records / elapsed if elapsed > 0 else 0.0
        return (
            f"phase 1: {done}/{total} tasks{resumed_note}, {records} records, "
            f"{rate:.1f} records/s{eta}"
        )


class NoProgress(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False)
