"""Device, precision and process-group helpers shared by both trainers."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound=BaseModel)
log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(device: torch.device, precision: str) -> str:
    """`fp32` on CPU (CPU bf16 autocast is slower than fp32 here); on CUDA `bf16` where the GPU
    supports it (Ampere and later), else `fp16` with a GradScaler (V100, T4); `fp32` as asked."""
    if device.type != "cuda" or precision == "fp32":
        return "fp32"
    if precision in ("bf16", "auto") and torch.cuda.is_bf16_supported():
        return "bf16"
    if precision == "bf16":
        log.warning("this GPU has no bf16; training in fp16 with a GradScaler instead")
    return "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    resolved = resolve_precision(device, precision)
    if resolved == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Precision:
    """Autocast plus, for fp16, a GradScaler: `backward(loss)` scales, `step()` unscales,
    clips, skips steps with inf/nan gradients and updates the scale."""

    def __init__(self, device: torch.device, precision: str) -> None:
        self.name = resolve_precision(device, precision)
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.name)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: list, clip: float | None) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


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


def rank_device(device: torch.device) -> torch.device:
    """This process's GPU under torchrun (LOCAL_RANK); the device as given otherwise."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def gather_objects(value: Any, world: int) -> list[Any]:
    """Every rank's `value`, in rank order (a list of one without a process group)."""
    if world == 1:
        return [value]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, value)
    return out


def any_rank(flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    return any(gather_objects(flag, world))


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


class RunLog(JsonlLog):
    """`train_log.jsonl` in the run folder, and TensorBoard event files in `tensorboard/`
    beside it when asked (`pip install tensorboard`, imported only then)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False) -> None:
        super().__init__(Path(run_dir) / "train_log.jsonl")
        self.board: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                from curate.errors import SpecError

                raise SpecError("train.tensorboard needs `pip install tensorboard`") from exc
            self.board = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        if self.board is not None and "step" in record:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self.board.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


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
