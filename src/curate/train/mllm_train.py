"""The MLLM's training loop: the configured stages in order, one or many processes.

Under torchrun (WORLD_SIZE > 1) every rank trains its share of each global batch under DDP
(wrapped anew per stage, since each stage changes which parameters train and LoRA adds modules);
rank 0 alone writes the log and the checkpoint, which holds every rank's RNG state. Resume skips
the batches already trained on by index (`curate.shards.training`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from curate.errors import InputError
from curate.train import checkpoint as ckpt
from curate.train.config import MLLMConfig
from curate.train.data import epoch_batches
from curate.train.mllm import apply_lora, build_mllm, set_trainable, stage_loader
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

log = logging.getLogger(__name__)


def train_mllm(
    config: MLLMConfig | str | Path,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Run the configured stages in order (or resume inside one). `stop_at` ends this call
    after that many optimizer steps in total, as an interruption would."""
    prepared, run_dir, checkpoint_path, device, state = prepare_run(
        config, MLLMConfig, run_dir, resume
    )
    config = prepared  # narrows the declared union for the code below
    tc = config.train
    device = rank_device(device)
    rank, world = maybe_init_distributed(device)
    if tc.batch_size % world:
        raise InputError(f"batch_size {tc.batch_size} does not split over {world} ranks")
    ckpt.seed_everything(tc.seed)
    model, tokenizer, preprocess, vision_record = build_mllm(config, state, data_dir)
    model.to(device)
    metrics = RunLog(run_dir, tc.tensorboard) if rank == 0 else None
    precision = Precision(device, tc.precision)
    stage_index = state["stage"] if state else 0
    stage_step = state["stage_step"] if state else 0
    total_step = state["step"] if state else 0
    mismatches = state.get("mismatches", 0) if state else 0
    lora_applied = bool(state and state.get("lora_applied"))
    last_loss = float("nan")
    ckpt.seed_rank(tc.seed, rank, world)
    if state is not None:
        ckpt.restore_rank_rng(state, rank, world)

    def save(stage_done: bool, index: int, epoch: int, batch_in_epoch: int) -> None:
        """A finished stage is saved as the start of the next one (no optimizer state).
        Collective: every rank hands over its RNG state and mismatch count; rank 0 writes."""
        per_rank = gather_objects({"rng": ckpt.rng_state(), "mismatches": mismatches}, world)
        if rank != 0:
            return
        ckpt.save_atomic(
            {
                "kind": "mllm",
                "config": config.model_dump(mode="json"),
                "tokenizer": tokenizer.__getstate__(),
                "vision": vision_record,
                "projector": model.projector.state_dict(),
                "lm": model.lm.state_dict(),
                "lora_applied": lora_applied,
                "optimizer": None if stage_done else optimizer.state_dict(),
                "scheduler": None if stage_done else scheduler.state_dict(),
                "grad_scaler": None if stage_done else precision.state_dict(),
                "stage": index + 1 if stage_done else index,
                "stage_step": 0 if stage_done else stage_step,
                "step": total_step,
                "epoch": 0 if stage_done else epoch,
                "batch_in_epoch": 0 if stage_done else batch_in_epoch,
                "world_size": world,
                # every rank counts the samples it masked; the checkpoint keeps the total
                "mismatches": sum(r["mismatches"] for r in per_rank) if world > 1 else mismatches,
                "rng": per_rank[0]["rng"],
                "rng_per_rank": [r["rng"] for r in per_rank],
            },
            checkpoint_path,
        )

    def result(stopped: bool) -> dict[str, Any]:
        return {
            "step": total_step,
            "loss": last_loss,
            "stopped": stopped,
            "checkpoint": str(checkpoint_path),
            "mismatches": mismatches,
        }

    if world > 1 and state is not None:
        # the checkpoint holds the sum over ranks; each rank counts its own from here on
        mismatches = mismatches if rank == 0 else 0
    optimizer: Any = None
    scheduler: Any = None
    for index in range(stage_index, len(config.stages)):
        stage = config.stages[index]
        if stage.train_lm and config.model.lora.enabled and not lora_applied:
            model.lm = apply_lora(model.lm, config)
            lora_applied = True
        set_trainable(model, stage)
        stage_cfg = tc.model_copy(update={"lr": stage.lr})
        optimizer = build_optimizer(list(model.named_parameters()), stage_cfg)
        scheduler = warmup_cosine(
            optimizer, min(tc.warmup_steps, stage.steps // 10), stage.steps, tc.min_lr_ratio
        )
        epoch, batch_in_epoch = 0, 0
        if state is not None and index == stage_index and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            precision.load_state_dict(state.get("grad_scaler"))
            epoch, batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        else:
            stage_step = 0
        train_model: nn.Module = model
        if world > 1:
            train_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        dataset, loader = stage_loader(
            config, stage, data_dir, tokenizer, preprocess, rank=rank, world=world
        )
        batches = epoch_batches(dataset, loader, epoch, batch_in_epoch)
        trainable = [p for p in model.parameters() if p.requires_grad]

        model.train()
        while stage_step < stage.steps:
            if stop_at is not None and total_step >= stop_at:
                save(False, index, epoch, batch_in_epoch)
                return result(True)
            epoch, batch_index, batch = next(batches)
            batch_in_epoch = batch_index + 1
            if any_rank(bool(batch.get("empty")), world):
                log.warning("epoch %d batch %d: no usable row on some rank", epoch, batch_index)
                continue
            with precision.autocast():
                loss = train_model(batch["images"].to(device), batch["ids"], batch["labels"])
            precision.backward(loss)
            precision.step(optimizer, trainable, tc.grad_clip)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            stage_step += 1
            total_step += 1
            mismatches += batch["mismatches"]
            last_loss = float(loss.detach())
            if metrics is not None and (
                stage_step % tc.log_every == 0 or stage_step == stage.steps
            ):
                metrics.write(
                    {
                        "stage": index,
                        "template": stage.template,
                        "step": total_step,
                        "stage_step": stage_step,
                        "loss": last_loss,
                        "lr": scheduler.get_last_lr()[0],
                        "tokenization_mismatches": mismatches,
                    }
                )
            if stage_step % tc.checkpoint_every == 0 and stage_step < stage.steps:
                save(False, index, epoch, batch_in_epoch)
        save(True, index, epoch, batch_in_epoch)
        state = None
    if rank == 0:
        (run_dir / "config.json").write_text(config.model_dump_json(indent=2))
    if metrics is not None:
        metrics.close()
    if mismatches:
        log.warning("%d samples masked for tokenisation mismatches", mismatches)
    return result(False)
