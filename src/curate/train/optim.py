"""AdamW with the CLIP exclusions and a warmup + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from curate.train.config import TrainConfig


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Gains, biases, norms, embeddings' scalars and the temperature take no weight decay
    (open_clip's `exclude`: ndim < 2 or a bn/ln/bias/logit_scale name)."""
    lowered = name.lower()
    return param.ndim < 2 or any(k in lowered for k in ("bn", "ln", "norm", "bias", "logit_scale"))


def build_optimizer(
    named_parameters: list[tuple[str, nn.Parameter]], config: TrainConfig, lr: float | None = None
) -> torch.optim.AdamW:
    trainable = [(n, p) for n, p in named_parameters if p.requires_grad]
    decay = [p for n, p in trainable if not no_decay(n, p)]
    plain = [p for n, p in trainable if no_decay(n, p)]
    groups = [
        {"params": plain, "weight_decay": 0.0},
        {"params": decay, "weight_decay": config.weight_decay},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=config.lr if lr is None else lr,
        betas=config.betas,
        eps=config.eps,
    )


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from lr/warmup to lr, then cosine decay to `min_ratio * lr`."""
    warmup = max(0, warmup_steps)
    total = max(total_steps, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
