"""Atomic training checkpoints: model, optimizer, scheduler, step, data position and every RNG
state (python, numpy, torch, cuda), so a resumed run continues exactly where it stopped."""

from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_rank(seed: int, rank: int, world: int) -> None:
    """After the model is built (identical on every rank): give each rank its own dropout
    stream. A single process keeps its stream as it is."""
    if world > 1:
        torch.manual_seed(seed * 1000 + rank + 1)
        if torch.cuda.is_available():
            torch.cuda.manual_seed(seed * 1000 + rank + 1)


def restore_rank_rng(state: dict[str, Any], rank: int, world: int) -> None:
    """This rank's RNG state from a checkpoint (older checkpoints hold rank 0's only)."""
    per_rank = state.get("rng_per_rank")
    if per_rank is not None and len(per_rank) == world:
        set_rng_state(per_rank[rank])
        return
    if world > 1 or (per_rank is not None and len(per_rank) != world):
        log.warning(
            "checkpoint written by %s ranks, resumed on %d: RNG streams are not restored "
            "exactly (the data position is: it counts global batches)",
            len(per_rank) if per_rank is not None else 1,
            world,
        )
    set_rng_state(state["rng"])
    if world > 1:
        seed_rank(int(state["step"]), rank, world)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then os.replace: a crash leaves
    either the old checkpoint or the new one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    # weights_only=False: the payload holds RNG states and configs, written by this project.
    state = torch.load(path, map_location=map_location, weights_only=False)
    _keep_old_image_resize(state)
    return state


def _keep_old_image_resize(state: dict[str, Any]) -> None:
    """Checkpoints written before `vision.resize` existed were trained on squashed squares:
    they keep that preprocessing (new configs default to open_clip's aspect-keeping crop)."""
    vision_configs = []
    if state.get("kind") == "cfm":
        vision_configs.append(state.get("config", {}).get("model", {}).get("vision"))
    if state.get("kind") == "mllm" and isinstance(state.get("vision"), dict):
        vision_configs.append(state["vision"].get("config"))
    for vision in vision_configs:
        if isinstance(vision, dict):
            vision.setdefault("resize", "squash")
