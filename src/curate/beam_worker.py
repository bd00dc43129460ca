"""Entry point of a local multi-processing Beam worker (`python -m curate.beam_worker`).

The same as `python -m apache_beam.runners.worker.sdk_worker_main`, with the process's logging
set up first from `CURATE_LOG_LEVEL`: the FnApiRunner passes a local worker no pipeline options,
so `--default_sdk_harness_log_level` never reaches it and its bootstrap logs at INFO.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from curate import logs

    logs.configure()  # a root handler first, so no library's basicConfig adds an INFO one
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
