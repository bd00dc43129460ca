"""Logging for the CLI and the local Beam workers: quiet by default, everything with --verbose.

Beam's SDK harness, nmslib and friends log at INFO on every worker start; a build's user wants
progress and problems, not those. The level is set on the *handler*, not only on loggers,
because Beam's worker bootstrap resets the root logger to INFO. Local multi-processing workers
are separate processes: they read the level from `CURATE_LOG_LEVEL` (see `curate.beam_worker`).
"""

from __future__ import annotations

import logging
import os
import sys

LOG_LEVEL_ENV = "CURATE_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# Libraries whose INFO chatter is never the user's concern without --verbose.
NOISY_LOGGERS = (
    "apache_beam",
    "nmslib",
    "urllib3",
    "botocore",
    "datasets",
    "huggingface_hub",
    "matplotlib",
    "PIL",
    "filelock",
)
# Warnings that every local worker repeats and that say nothing about the build.
IGNORED_MESSAGES = (
    "apitools not found",
    "No semi_persistent_directory found",
    "No session file found",
    "Discarding unparseable args",
)

# Environment that silences the progress bars and advisories of Hugging Face libraries.
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


class IgnoreBoilerplate(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in IGNORED_MESSAGES)


def level_from_env(default: int = logging.WARNING) -> int:
    name = os.environ.get(LOG_LEVEL_ENV, "")
    level = logging.getLevelName(name.upper()) if name else default
    return level if isinstance(level, int) else default


def configure(verbose: bool | None = None, *, stream: object = None) -> int:
    """Set up the root handler of this process; returns the level chosen (INFO when verbose,
    else WARNING; None: from `CURATE_LOG_LEVEL`, as a worker does). Exported to
    `CURATE_LOG_LEVEL` so worker processes started from here log the same way."""
    if verbose is None:
        level = level_from_env()
    else:
        level = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    for handler in list(root.handlers):
        # ours from an earlier call, or a default one a library's logging.warning() added
        # through basicConfig (format "LEVEL:name:message", no level of its own)
        stream_of = getattr(handler, "stream", None)
        if getattr(handler, "_curate", False) or (
            type(handler) is logging.StreamHandler and stream_of in (sys.stderr, sys.stdout)
        ):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(IgnoreBoilerplate())
    handler._curate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if level > logging.INFO:
        # Model loading draws tqdm bars ("Loading weights") in every worker; workers inherit
        # these variables, which Hugging Face libraries read when they are imported.
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
        # Local workers' start-up notices, relayed by the job service.
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(
            max(level, logging.ERROR)
        )
    os.environ[LOG_LEVEL_ENV] = logging.getLevelName(level)
    return level


def is_verbose() -> bool:
    return level_from_env() <= logging.INFO
