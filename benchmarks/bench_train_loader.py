"""Training throughput through `load_shards()` vs the same model fed from in-memory tensors.

Baseline: every image decoded and every caption tokenised up front, batches sliced from
tensors in memory (the fastest possible feed). Candidate: the trainer's real path —
`load_training_batches()` (global batches, shuffle buffer) -> Pillow decode + resize/crop +
tokenise in DataLoader workers ->
the same CFM step. Both run the same number of steps on the same data in one process; the
ratio candidate/baseline (samples/s) should be >= 0.8, i.e. the loader is not the bottleneck.

    .venv/bin/python benchmarks/bench_train_loader.py [--steps 40] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))

from synthetic_data import write_synthetic_shards  # noqa: E402

from curate.shards.loader import load_shards  # noqa: E402
from curate.shards.training import load_training_batches  # noqa: E402
from curate.train.cfm import accumulated_backward, build_cfm  # noqa: E402
from curate.train.config import load_config  # noqa: E402
from curate.train.data import (  # noqa: E402
    MappedBatches,
    PairCollate,
    PairTransform,
    epoch_batches,
    make_loader,
)
from curate.train.optim import build_optimizer  # noqa: E402


def step(model, optimizer, images, ids, mask) -> None:
    accumulated_backward(model, [(images, ids, mask)])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.clamp_logit_scale()


def timed(model, optimizer, batches, steps: int, warmup: int) -> float:
    """Samples per second over `steps` steps after `warmup` untimed ones."""
    for _ in range(warmup):
        b = next(batches)
        step(model, optimizer, b["images"], b["ids"], b["mask"])
    start, samples = time.perf_counter(), 0
    for _ in range(steps):
        b = next(batches)
        step(model, optimizer, b["images"], b["ids"], b["mask"])
        samples += b["images"].shape[0]
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default="cfm_tiny")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the 2-core CI box: one core trains, the other decodes
    config = load_config(args.config)
    batch_size = config.train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        out = write_synthetic_shards(
            Path(tmp) / "out", train=2048, validation=0, instructions=False
        )
        torch.manual_seed(0)
        texts = [r["caption"] for r in load_shards(out, columns=["caption"])]
        model, tokenizer, preprocess = build_cfm(config, texts=texts)
        optimizer = build_optimizer(list(model.named_parameters()), config.train)

        # Baseline feed: everything decoded and tokenised before timing.
        rows = list(load_shards(out, columns=["image", "caption"]))
        images = torch.stack([preprocess(r["image"]) for r in rows])
        ids, mask = tokenizer([r["caption"] for r in rows])

        def memory_batches():
            while True:
                order = torch.randperm(len(rows))
                for start in range(0, len(rows) - batch_size + 1, batch_size):
                    pick = order[start : start + batch_size]
                    yield {"images": images[pick], "ids": ids[pick], "mask": mask[pick]}

        source = load_training_batches(out, batch_size, columns=["image", "caption"], seed=0)
        dataset = MappedBatches(
            source, PairTransform(preprocess, ["caption"]), PairCollate(tokenizer)
        )
        loader = make_loader(dataset, args.workers, seed=0)
        shard_batches = (b for _, _, b in epoch_batches(dataset, loader, 0, 0))

        memory_rates, shard_rates = [], []
        for _ in range(args.rounds):  # interleaved rounds: drift on a shared box hits both
            memory_rates.append(timed(model, optimizer, memory_batches(), args.steps, 3))
            shard_rates.append(timed(model, optimizer, shard_batches, args.steps, 3))
    memory, shards = max(memory_rates), max(shard_rates)
    print(
        f"config {args.config}, batch {batch_size}, {args.steps} steps x {args.rounds} rounds, "
        f"{args.workers} decode worker(s)"
    )
    print(f"in-memory tensors      : {memory:8.1f} samples/s")
    print(f"training batches+decode: {shards:8.1f} samples/s")
    print(f"ratio (shards/memory)  : {shards / memory:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
