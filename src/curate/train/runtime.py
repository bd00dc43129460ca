"""Device, precision and process-group helpers shared by both trainers."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU; full precision on CPU (CPU bf16 is slower than fp32 here)."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size). Initialises a process group when launched by torchrun
    (WORLD_SIZE > 1 in the environment) and none exists yet."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class JsonlLog:
    """Appends one JSON object per line, flushed at once (safe to tail during training)."""

    def __init__(self, path: str | Path, echo: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        if self.echo:
            shown = {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in record.items()
                if k != "time"
            }
            print(json.dumps(shown, sort_keys=True), flush=True)


def prepare_run(
    config: ConfigT | str | Path, config_cls: type[ConfigT], run_dir: str | Path, resume: bool
) -> tuple[ConfigT, Path, Path, torch.device, dict[str, Any] | None]:
    """Shared start of every trainer: load and check the config, make the run folder, pick the
    device and thread count, and load the checkpoint when resuming. A resumed run keeps the
    model config saved in its checkpoint and takes the `train` settings given now.

    Returns (config, run_dir, checkpoint path, device, checkpoint state or None)."""
    from curate.errors import InputError
    from curate.train import checkpoint as ckpt
    from curate.train.config import load_config

    loaded: Any = config if isinstance(config, config_cls) else load_config(config)  # type: ignore[arg-type]
    if not isinstance(loaded, config_cls):
        raise InputError(f"this trainer needs a config of kind {config_cls.__name__}")
    # Every trainer config has a `train` section.
    tc: Any = loaded.train  # type: ignore[attr-defined]
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    checkpoint_path = run_dir / ckpt.CHECKPOINT_NAME
    state = ckpt.load(checkpoint_path) if resume and checkpoint_path.is_file() else None
    if state is not None:
        loaded = config_cls.model_validate(state["config"]).model_copy(update={"train": tc})
    return loaded, run_dir, checkpoint_path, device, state
