"""Runs one trainer in this process, as `torchrun --nproc_per_node N ddp_runner.py ...` does.

`--die-after-step K` kills the process abruptly (os._exit, no clean-up) right after the
checkpoint of step K is on disk: a real interruption, which torchrun answers by stopping the
other ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["cfm", "mllm"])
    parser.add_argument("config")
    parser.add_argument("data")
    parser.add_argument("run")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--die-after-step", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2 ranks on 2 shared cores
    from curate.train import checkpoint

    if args.die_after_step is not None:
        save = checkpoint.save_atomic

        def save_then_die(payload, path):
            written = save(payload, path)
            if payload["step"] == args.die_after_step:
                sys.stdout.flush()
                os._exit(3)
            return written

        checkpoint.save_atomic = save_then_die  # type: ignore[assignment]
    from curate.train.config import load_config

    config = load_config(args.config)
    if args.kind == "cfm":
        from curate.train.cfm import train_cfm as train
    else:
        from curate.train.mllm_train import train_mllm as train
    result = train(config, args.data, args.run, resume=args.resume)
    # as `curate train` does: wait for every rank and release the group before exiting (left to
    # interpreter exit, gloo's threads can abort a rank: "terminate called without an active
    # exception", SIGABRT, after a finished run)
    from curate.train.cli import _end_process_group

    _end_process_group()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
