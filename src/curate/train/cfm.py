"""CFM training loop: symmetric InfoNCE (+ optional local loss), AdamW, warmup + cosine,
bf16 autocast on GPU, gradient accumulation that keeps every negative, atomic checkpoints and
exact resume. Reads data only through `load_shards()`."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from curate.errors import InputError
from curate.shards.loader import load_shards
from curate.train import checkpoint as ckpt
from curate.train.config import CFMConfig
from curate.train.data import (
    MappedRows,
    PairCollate,
    PairTransform,
    epoch_batches,
    make_loader,
    pick_text_columns,
    sample_texts,
    shard_columns,
)
from curate.train.losses import clip_loss, local_loss
from curate.train.model import CFM
from curate.train.optim import build_optimizer, warmup_cosine
from curate.train.runtime import (
    JsonlLog,
    autocast,
    maybe_init_distributed,
    prepare_run,
)
from curate.train.text import build_text_side
from curate.train.vision import ImagePreprocess

log = logging.getLogger(__name__)


def build_cfm(config: CFMConfig, texts: Any = None, tokenizer_str: str | None = None):
    """(model, tokenizer, preprocess) for a config; the tokenizer is trained on `texts` or
    restored from `tokenizer_str`."""
    tokenizer, text_tower = build_text_side(config.model.text, texts, tokenizer_str)
    model = CFM(config.model, text_tower)
    return model, tokenizer, ImagePreprocess.from_config(config.model.vision)


def _local_term(model: CFM, out: dict[str, Any]) -> torch.Tensor:
    cfg = model.config.local_loss
    return cfg.weight * local_loss(
        out["word_tokens"],
        out["word_mask"],
        out["patch_tokens"],
        cfg.temperature_attention,
        cfg.temperature_aggregate,
        cfg.temperature_logits,
    )


def accumulated_backward(
    model: nn.Module,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    amp: contextlib.AbstractContextManager | None = None,
) -> float:
    """Backward of the full-batch contrastive loss, micro-batch by micro-batch.

    open_clip's recipe: embed every micro-batch without gradients, then re-forward each one
    with gradients and put its fresh features in place of its cached ones, so each backward
    sees all negatives. Gradients summed over micro-batches equal the full-batch gradient. The
    temperature enters through the first micro-batch only (otherwise its gradient would count
    once per micro-batch). The local loss is computed within each micro-batch and averaged.
    Returns the loss value.
    """
    amp = amp or contextlib.nullcontext()
    core: Any = model.module if isinstance(model, DistributedDataParallel) else model
    with_local = core.config.local_loss.enabled
    if len(micro_batches) == 1:
        with amp:
            out = model(*micro_batches[0])
            loss = clip_loss(out["image_features"], out["text_features"], out["logit_scale"])
            if with_local:
                loss = loss + _local_term(core, out)
        loss.backward()
        return float(loss.detach())

    cached_images, cached_texts = [], []
    with torch.no_grad(), amp:
        for images, ids, mask in micro_batches:
            cached_images.append(core.encode_image(images))
            cached_texts.append(core.encode_text(ids, mask))
    total = 0.0
    count = len(micro_batches)
    for index, batch in enumerate(micro_batches):
        sync = (
            model.no_sync()
            if isinstance(model, DistributedDataParallel) and index < count - 1
            else contextlib.nullcontext()
        )
        with sync:
            with amp:
                out = model(*batch)
                images = torch.cat(
                    cached_images[:index] + [out["image_features"]] + cached_images[index + 1 :]
                )
                texts = torch.cat(
                    cached_texts[:index] + [out["text_features"]] + cached_texts[index + 1 :]
                )
                scale = out["logit_scale"] if index == 0 else out["logit_scale"].detach()
                loss = clip_loss(images, texts, scale)
                if index == 0:
                    total = float(loss.detach())
                if with_local:
                    local = _local_term(core, out) / count
                    total += float(local.detach())
                    loss = loss + local
            loss.backward()
    return total


def split_micro(batch: dict[str, Any], accum_steps: int, device: torch.device):
    images, ids, mask = (batch[k].to(device, non_blocking=True) for k in ("images", "ids", "mask"))
    if images.shape[0] % accum_steps:
        raise InputError(
            f"batch of {images.shape[0]} does not split into {accum_steps} equal micro-batches"
        )
    return list(zip(images.chunk(accum_steps), ids.chunk(accum_steps), mask.chunk(accum_steps)))


def train_cfm(
    config: CFMConfig | str | Path,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a CFM; returns {"step", "loss", "checkpoint"}.

    `stop_at` ends this invocation early at that step (as an interruption would) while the
    schedule still targets `config.train.steps`.
    """
    prepared, run_dir, checkpoint_path, device, state = prepare_run(
        config, CFMConfig, run_dir, resume
    )
    config = prepared  # narrows the declared union for the code below
    tc = config.train
    rank, world = maybe_init_distributed(device)
    if resume and state is None:
        log.info("no checkpoint in %s; starting from scratch", run_dir)

    text_columns = pick_text_columns(
        shard_columns(data_dir, tc.train_split), [tc.text_column, *tc.fallback_text_columns]
    )
    ckpt.seed_everything(tc.seed)
    if state is None:
        texts = sample_texts(
            data_dir, tc.train_split, text_columns, config.model.text.tokenizer_sample
        )
        model, tokenizer, preprocess = build_cfm(config, texts=texts)
    else:
        model, tokenizer, preprocess = build_cfm(config, tokenizer_str=state["tokenizer"])
    model.to(device)
    optimizer = build_optimizer(list(model.named_parameters()), tc)
    scheduler = warmup_cosine(optimizer, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
    step, epoch, batch_in_epoch = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        ckpt.set_rng_state(state["rng"])
    train_model: nn.Module = model
    if world > 1:
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    source = load_shards(
        data_dir,
        split=tc.train_split,
        columns=["image", *text_columns],
        shuffle=True,
        seed=tc.seed,
        rank=rank,
        world_size=world,
    )
    dataset = MappedRows(source, PairTransform(preprocess, text_columns))
    loader = make_loader(dataset, tc.batch_size, PairCollate(tokenizer), tc.num_workers, True)
    metrics = JsonlLog(run_dir / "train_log.jsonl", echo=rank == 0)
    amp = autocast(device, tc.precision)
    tokenizer_str = tokenizer.to_str() if hasattr(tokenizer, "to_str") else None

    def save() -> Path:
        payload = {
            "kind": "cfm",
            "config": config.model_dump(mode="json"),
            "tokenizer": tokenizer_str,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": ckpt.rng_state(),
        }
        return ckpt.save_atomic(payload, checkpoint_path)

    last_loss = float("nan")
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    model.train()
    batches = epoch_batches(dataset, loader, epoch, batch_in_epoch)
    while step < end:
        epoch, index, batch = next(batches)
        micro = split_micro(batch, tc.accum_steps, device)
        last_loss = accumulated_backward(train_model, micro, amp)
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        model.clamp_logit_scale()
        step += 1
        batch_in_epoch = index + 1
        if step % tc.log_every == 0 or step == end:
            metrics.write(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": last_loss,
                    "lr": scheduler.get_last_lr()[0],
                    "logit_scale": float(model.logit_scale.detach().exp()),
                }
            )
        if rank == 0 and (step % tc.checkpoint_every == 0 or step == end):
            save()
    if rank == 0 and not checkpoint_path.is_file():
        save()
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2))
    return {"step": step, "loss": last_loss, "checkpoint": str(checkpoint_path)}
