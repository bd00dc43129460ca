"""Choose the Beam runner: FnApiRunner locally (never PrismRunner, which downloads a binary),
or any other runner (Dataflow, Flink, Spark) by name with its options passed through."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from curate.errors import SpecError

LOCAL_RUNNERS = ("local", "FnApiRunner", "DirectRunner")
RUNNING_MODES = ("multi_processing", "multi_threading", "in_memory")
# Runners whose workers never share the launcher's disk: every path must be an object-store URI.
REMOTE_ONLY_RUNNERS = ("DataflowRunner", "dataflow")
# The Beam version of the worker image `docker/Dockerfile` builds (and `constraints.txt` pins);
# a launcher with another version would submit a job its workers cannot run.
WORKER_BEAM_VERSION = "2.77.0"


# Local multi-processing workers start through `curate.beam_worker`, which sets their logging up
# from CURATE_LOG_LEVEL before Beam's bootstrap logs anything (see curate.logs).
WORKER_COMMAND = f"{shlex.quote(sys.executable)} -m curate.beam_worker"  # run with shell=True


def quiet_fn_api_runner() -> Any:
    """An FnApiRunner whose subprocess workers run `WORKER_COMMAND` instead of Beam's own
    `sdk_worker_main` (same harness, logging configured first)."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    class QuietFnApiRunner(FnApiRunner):
        # FnApiRunner.run_pipeline assigns the worker environment just before submitting; a
        # subprocess one is swapped for the same harness behind curate's logging set-up.
        @property
        def _default_environment(self) -> Any:
            return self.__dict__["_curate_environment"]

        @_default_environment.setter
        def _default_environment(self, environment: Any) -> None:
            if isinstance(environment, SubprocessSDKEnvironment):
                environment = SubprocessSDKEnvironment.from_command_string(WORKER_COMMAND)
            self.__dict__["_curate_environment"] = environment

    return QuietFnApiRunner()


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
            return quiet_fn_api_runner(), PipelineOptions(args)
        return None, PipelineOptions([f"--runner={self.runner}", *self.beam_args])

    def configure_filesystems(self) -> None:
        """Give Beam's FileSystems the pipeline options (S3 endpoint and credentials, GCS
        project, ...), so the driver reads and writes object stores as the workers do."""
        from apache_beam.io.filesystems import FileSystems

        FileSystems.set_options(PipelineOptions(self.beam_args))

    def resolve_paths(self, paths: dict[str, str]) -> dict[str, str]:
        """Paths as the workers must see them: relative local paths made absolute (a worker
        pool started elsewhere has another working directory); with a runner whose workers
        never share this machine's disk, a local path is refused with the reason."""
        resolved = {}
        for what, path in paths.items():
            if "://" in path or path.startswith("demo:"):
                resolved[what] = path
                continue
            if self.runner in REMOTE_ONLY_RUNNERS:
                raise SpecError(
                    f"{what} is the local path {path!r}, which {self.runner} workers cannot "
                    "read: put it on gs:// (or s3://) and pass that URI"
                )
            resolved[what] = os.path.abspath(path)
        return resolved

    def check_beam_version(self, installed: str | None = None) -> None:
        """A non-local submission needs the launcher's Beam to equal the worker image's."""
        if self.is_local:
            return
        if installed is None:
            import apache_beam

            installed = apache_beam.__version__
        if installed != WORKER_BEAM_VERSION:
            raise SpecError(
                f"this launcher has apache-beam {installed}, the worker image has "
                f"{WORKER_BEAM_VERSION}: install the launcher with `pip install -c constraints.txt`"
                " (or rebuild the image) so both match before submitting"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "runner": "FnApiRunner" if self.is_local else self.runner,
            "running_mode": self.running_mode if self.is_local else None,
            "num_workers": self.workers() if self.is_local else None,
            "beam_args": self.beam_args,
        }
