"""`curate train cfm|mllm` and `curate eval cfm|mllm`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from curate.errors import CurateError


def _overrides(config: Any, args: argparse.Namespace) -> Any:
    train = config.train
    updates = {}
    if getattr(args, "steps", None) is not None:
        if config.kind == "cfm":
            updates["steps"] = args.steps
        else:  # for the MLLM --steps scales every stage to that many steps in total
            total = sum(s.steps for s in config.stages) or 1
            stages = [
                s.model_copy(update={"steps": max(1, round(s.steps * args.steps / total))})
                for s in config.stages
            ]
            config = config.model_copy(update={"stages": stages})
    if getattr(args, "device", None):
        updates["device"] = args.device
    if getattr(args, "num_workers", None) is not None:
        updates["num_workers"] = args.num_workers
    return config.model_copy(update={"train": train.model_copy(update=updates)})


def _train(args: argparse.Namespace) -> int:
    from curate.train.config import load_config

    try:
        config = _overrides(load_config(args.config), args)
        if config.kind != args.model:
            raise CurateError(f"config {args.config!r} is a {config.kind} config, not {args.model}")
        if args.model == "cfm":
            from curate.train.cfm import train_cfm

            result = train_cfm(config, args.data, args.out, resume=args.resume)
        else:
            if args.vision_checkpoint:
                model = config.model.model_copy(
                    update={"vision_checkpoint": args.vision_checkpoint}
                )
                config = config.model_copy(update={"model": model})
            from curate.train.mllm_train import train_mllm

            result = train_mllm(config, args.data, args.out, resume=args.resume)
    except (CurateError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}")
        return 2
    rank = _rank()
    _end_process_group()
    if rank != 0:  # under torchrun: rank 0 reports and evaluates
        return 0
    print(json.dumps(result, sort_keys=True))
    if args.model == "cfm" and args.eval_split:
        return _eval(
            argparse.Namespace(
                model="cfm",
                checkpoint=result["checkpoint"],
                data=args.data,
                split=args.eval_split,
                metrics=None,
                device=args.device or "auto",
                limit=None,
            )
        )
    return 0


def _open_clip(args: argparse.Namespace) -> int:
    from curate.train.open_clip_format import export_open_clip

    try:
        folder = export_open_clip(args.checkpoint, args.out)
    except (CurateError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"open_clip model folder: {folder}")
    return 0


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _end_process_group() -> None:
    """After training under torchrun: wait for every rank, then release the group (the
    evaluation that follows runs on rank 0 alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _eval(args: argparse.Namespace) -> int:
    try:
        if args.model == "cfm":
            from curate.train.evaluate import evaluate_cfm, summary_lines

            record = evaluate_cfm(
                args.checkpoint,
                args.data,
                split=args.split,
                metrics_path=args.metrics,
                device=args.device,
            )
        else:
            from curate.train.mllm_eval import evaluate_mllm, summary_lines

            record = evaluate_mllm(
                args.checkpoint,
                args.data,
                split=args.split,
                metrics_path=args.metrics,
                device=args.device,
                limit=args.limit,
            )
    except (CurateError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}")
        return 2
    print("\n".join(summary_lines(record)))
    return 0


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train a reference model on built shards")
    train_sub = train.add_subparsers(dest="model", required=True)
    for name, help_text in (
        ("cfm", "CLIP-style contrastive model"),
        ("mllm", "LLaVA-style multimodal LLM"),
    ):
        p = train_sub.add_parser(name, help=help_text)
        p.add_argument(
            "--config",
            required=True,
            help="JSON config file, or a shipped name (cfm_tiny, mllm_tiny, ...)",
        )
        p.add_argument("--data", required=True, type=Path, help="build output directory (OUT)")
        p.add_argument("--out", required=True, type=Path, help="run directory")
        p.add_argument("--steps", type=int, help="override the number of optimizer steps")
        p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: auto)")
        p.add_argument("--num-workers", type=int, help="DataLoader workers decoding images")
        if name == "cfm":
            p.add_argument(
                "--eval-split",
                default=None,
                help="evaluate on this split after training (e.g. validation)",
            )
        else:
            p.add_argument("--vision-checkpoint", help="CFM run directory or checkpoint file")
        p.set_defaults(func=_train)
    convert = subparsers.add_parser(
        "open-clip", help="write a trained CFM as an open_clip model folder (weights + config)"
    )
    convert.add_argument("--checkpoint", required=True, type=Path, help="run dir or checkpoint.pt")
    convert.add_argument("--out", required=True, type=Path, help="folder to write")
    convert.set_defaults(func=_open_clip)
    evaluate = subparsers.add_parser("eval", help="evaluate a trained reference model")
    eval_sub = evaluate.add_subparsers(dest="model", required=True)
    for name in ("cfm", "mllm"):
        p = eval_sub.add_parser(name, help=f"evaluate a {name.upper()} checkpoint")
        p.add_argument("--checkpoint", required=True, type=Path, help="run dir or checkpoint.pt")
        p.add_argument("--data", required=True, type=Path, help="build output directory (OUT)")
        p.add_argument("--split", default="validation")
        p.add_argument(
            "--metrics",
            type=Path,
            help="JSONL file to append to (default: <run dir>/eval_metrics.jsonl)",
        )
        p.add_argument("--device", default="auto")
        p.add_argument("--limit", type=int, default=None, help="evaluate at most N rows (mllm)")
        p.set_defaults(func=_eval)
