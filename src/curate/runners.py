"""Choose the Beam runner: FnApiRunner locally (never PrismRunner, which downloads a binary),
or any other runner (Dataflow, Flink, Spark) by name with its options passed through."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_RUNNERS = ("local", "FnApiRunner", "DirectRunner")
RUNNING_MODES = ("multi_processing", "multi_threading", "in_memory")


@dataclass
class RunnerChoice:
    runner: str = "local"
    running_mode: str = "multi_processing"
    num_workers: int = 0  # 0: all cores
    beam_args: list[str] = field(default_factory=list)

    @property
    def is_local(self) -> bool:
        return self.runner in LOCAL_RUNNERS

    def workers(self) -> int:
        return self.num_workers or os.cpu_count() or 1

    def make(self) -> tuple[Any, PipelineOptions]:
        """(runner object or None, PipelineOptions) for `beam.Pipeline(runner=..., options=...)`."""
        if self.is_local:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            mode = self.running_mode
            workers = self.workers()
            if workers == 1 and mode == "multi_processing":
                mode = "in_memory"  # a subprocess worker only adds start-up cost with one core
            if mode == "in_memory":
                workers = 1  # in-memory runs one bundle at a time whatever the count says
            args = [
                f"--direct_running_mode={mode}",
                f"--direct_num_workers={workers}",
                "--default_sdk_harness_log_level=ERROR",
                *self.beam_args,
            ]
            return FnApiRunner(), PipelineOptions(args)
        return None, PipelineOptions([f"--runner={self.runner}", *self.beam_args])

    def describe(self) -> dict[str, Any]:
        return {
            "runner": "FnApiRunner" if self.is_local else self.runner,
            "running_mode": self.running_mode if self.is_local else None,
            "num_workers": self.workers() if self.is_local else None,
            "beam_args": self.beam_args,
        }
