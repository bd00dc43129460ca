"""CFM training loop: symmetric InfoNCE (+ optional local loss), AdamW, warmup + cosine,
bf16 (or fp16 + GradScaler) autocast on GPU, gradient accumulation that keeps every negative,
DDP over torchrun ranks, atomic checkpoints and exact resume (per-rank RNG and data position).
Reads data only through the shard readers (`curate.shards`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from curate.errors import InputError
from curate.shards.training import load_training_batches
from curate.train import checkpoint as ckpt
from curate.train.config import CFMConfig
from curate.train.data import (
    MappedBatches,
    PairCollate,
    PairTransform,
    epoch_batches,
    make_loader,
    pick_text_columns,
    sample_texts,
    shard_columns,
)
from curate.train.losses import clip_loss, local_loss, scale_grad
from curate.train.model import CFM
from curate.train.optim import build_optimizer, warmup_cosine
from curate.train.runtime import (
    Precision,
    RunLog,
    any_rank,
    gather_objects,
    maybe_init_distributed,
    prepare_run,
    rank_device,
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
    backward: Callable[[torch.Tensor], None] | None = None,
) -> float:
    """Backward of the full-batch contrastive loss, micro-batch by micro-batch.

    open_clip's recipe: embed every micro-batch without gradients, then re-forward each one
    with gradients and put its fresh features in place of its cached ones, so each backward
    sees all negatives. Gradients summed over micro-batches equal the full-batch gradient. Each
    micro-batch's loss has the full-batch value, so the temperature's gradient would count once
    per micro-batch: it enters every micro-batch with its gradient scaled by 1/count (so under
    DDP every parameter gets a gradient in every backward, and the sum is exact). The local
    loss is computed within each micro-batch and averaged. `backward` replaces
    `loss.backward()` (a GradScaler's scaling). Returns the loss value.
    """
    amp = amp or contextlib.nullcontext()
    backward = backward or (lambda loss: loss.backward())
    core: Any = model.module if isinstance(model, DistributedDataParallel) else model
    with_local = core.config.local_loss.enabled
    if len(micro_batches) == 1:
        with amp:
            out = model(*micro_batches[0])
            loss = clip_loss(out["image_features"], out["text_features"], out["logit_scale"])
            if with_local:
                loss = loss + _local_term(core, out)
        backward(loss)
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
                scale = scale_grad(out["logit_scale"], 1.0 / count)
                loss = clip_loss(images, texts, scale)
                if index == 0:
                    total = float(loss.detach())
                if with_local:
                    local = _local_term(core, out) / count
                    total += float(local.detach())
                    loss = loss + local
            backward(loss)
    return total


def _from_open_clip(config: CFMConfig, data_dir: str | Path, text_columns: list[str]):
    """A new CFM initialised from an open_clip folder: the image tower always, the text tower
    and its tokenizer when the folder was exported by curate (see open_clip_format)."""
    from curate.train.open_clip_format import TOKENIZER_FILE, import_open_clip

    source = Path(str(config.model.init_open_clip))
    tokenizer_file = source / TOKENIZER_FILE if source.is_dir() else None
    if tokenizer_file is not None and tokenizer_file.is_file():
        model, tokenizer, preprocess = build_cfm(config, tokenizer_str=tokenizer_file.read_text())
    else:
        texts = sample_texts(
            data_dir, config.train.train_split, text_columns, config.model.text.tokenizer_sample
        )
        model, tokenizer, preprocess = build_cfm(config, texts=texts)
    report = import_open_clip(model, source)
    log.info(
        "initialised %d tensors from %s (text tower: %s)",
        len(report["loaded"]),
        source,
        report["text"],
    )
    return model, tokenizer, preprocess


def split_micro(batch: dict[str, Any], accum_steps: int, device: torch.device):
    """`accum_steps` micro-batches (as equal as the rows allow: a batch that lost unusable
    rows splits unevenly, which the accumulated loss does not mind)."""
    images, ids, mask = (batch[k].to(device, non_blocking=True) for k in ("images", "ids", "mask"))
    parts = accum_steps  # the same on every rank: each micro-batch gathers across ranks
    return list(zip(images.tensor_split(parts), ids.tensor_split(parts), mask.tensor_split(parts)))


def train_cfm(
    config: CFMConfig | str | Path,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a CFM; returns {"step", "loss", "checkpoint"}.

    Under torchrun (WORLD_SIZE > 1) every rank trains its share of each global batch of
    `train.batch_size` rows under DDP; rank 0 alone writes the log and the checkpoint, which
    holds every rank's RNG state and data position. `stop_at` ends this invocation early at
    that step (as an interruption would) while the schedule still targets `config.train.steps`.
    """
    prepared, run_dir, checkpoint_path, device, state = prepare_run(
        config, CFMConfig, run_dir, resume
    )
    config = prepared  # narrows the declared union for the code below
    tc = config.train
    device = rank_device(device)
    rank, world = maybe_init_distributed(device)
    if tc.batch_size % (world * tc.accum_steps):
        raise InputError(
            f"batch_size {tc.batch_size} must split into {world} ranks x {tc.accum_steps} "
            "micro-batches"
        )
    if resume and state is None:
        log.info("no checkpoint in %s; starting from scratch", run_dir)

    text_columns = pick_text_columns(
        shard_columns(data_dir, tc.train_split), [tc.text_column, *tc.fallback_text_columns]
    )
    ckpt.seed_everything(tc.seed)
    if state is None and config.model.init_open_clip:
        model, tokenizer, preprocess = _from_open_clip(config, data_dir, text_columns)
    elif state is None:
        texts = sample_texts(
            data_dir, tc.train_split, text_columns, config.model.text.tokenizer_sample
        )
        model, tokenizer, preprocess = build_cfm(config, texts=texts)
    else:
        model, tokenizer, preprocess = build_cfm(config, tokenizer_str=state["tokenizer"])
    train_preprocess = ImagePreprocess.from_config(config.model.vision, train=True)
    model.to(device)
    optimizer = build_optimizer(list(model.named_parameters()), tc)
    scheduler = warmup_cosine(optimizer, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
    precision = Precision(device, tc.precision)
    ckpt.seed_rank(tc.seed, rank, world)  # distinct dropout per rank, same init everywhere
    step, epoch, batch_in_epoch = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        precision.load_state_dict(state.get("grad_scaler"))
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        ckpt.restore_rank_rng(state, rank, world)
    train_model: nn.Module = model
    if world > 1:
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    rows = load_training_batches(
        data_dir,
        tc.batch_size,
        split=tc.train_split,
        columns=["image", *text_columns],
        seed=tc.seed,
        rank=rank,
        world_size=world,
        buffer_rows=tc.shuffle_buffer_rows,
    )
    dataset = MappedBatches(
        rows, PairTransform(train_preprocess, text_columns), PairCollate(tokenizer)
    )
    loader = make_loader(dataset, tc.num_workers, tc.seed)
    metrics = RunLog(run_dir, tc.tensorboard) if rank == 0 else None
    tokenizer_str = tokenizer.to_str() if hasattr(tokenizer, "to_str") else None

    def save() -> Path | None:
        # Collective: every rank hands over its RNG state and data position, rank 0 writes.
        per_rank = gather_objects(
            {"rng": ckpt.rng_state(), "rows_in_epoch": rows.rows_before(batch_in_epoch)}, world
        )
        if rank != 0:
            return None
        payload = {
            "kind": "cfm",
            "config": config.model_dump(mode="json"),
            "tokenizer": tokenizer_str,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "grad_scaler": precision.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "world_size": world,
            "rows_in_epoch_per_rank": [r["rows_in_epoch"] for r in per_rank],
            "rng": per_rank[0]["rng"],
            "rng_per_rank": [r["rng"] for r in per_rank],
        }
        return ckpt.save_atomic(payload, checkpoint_path)

    last_loss = float("nan")
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    model.train()
    batches = epoch_batches(dataset, loader, epoch, batch_in_epoch)
    saved_at = -1
    while step < end:
        epoch, index, batch = next(batches)
        batch_in_epoch = index + 1
        if any_rank(bool(batch.get("empty")), world):
            log.warning("epoch %d batch %d: no usable row on some rank; skipped", epoch, index)
            continue
        micro = split_micro(batch, tc.accum_steps, device)
        last_loss = accumulated_backward(
            train_model, micro, precision.autocast(), precision.backward
        )
        precision.step(optimizer, list(model.parameters()), tc.grad_clip)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        model.clamp_logit_scale()
        step += 1
        if metrics is not None and (step % tc.log_every == 0 or step == end):
            metrics.write(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": last_loss,
                    "lr": scheduler.get_last_lr()[0],
                    "logit_scale": float(model.logit_scale.detach().exp()),
                }
            )
        if step % tc.checkpoint_every == 0 or step == end:
            save()
            saved_at = step
    if saved_at != step:
        save()
    if rank == 0:
        (run_dir / "config.json").write_text(config.model_dump_json(indent=2))
    if metrics is not None:
        metrics.close()
    return {"step": step, "loss": last_loss, "checkpoint": str(checkpoint_path)}
