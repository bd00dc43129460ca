"""Feeding trainers from the shards (`curate.shards.training`): global batches in a
deterministic per-epoch order, images decoded and text tokenised inside DataLoader workers, and
resume that skips the batches already trained on by index."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset

from curate.errors import InputError
from curate.shards.loader import load_shards
from curate.shards.training import SAMPLE_SEED, TrainingRows

log = logging.getLogger(__name__)


def shard_columns(data_dir: str | Path, split: str, table: str = "shards") -> list[str]:
    """Column names of a split's shards (from the Parquet footer of the first file)."""
    dataset = load_shards(data_dir, split=split, table=table)
    return list(pq.ParquetFile(dataset.files[0]).schema_arrow.names)


def pick_text_columns(available: list[str], preferred: list[str]) -> list[str]:
    chosen = [c for c in preferred if c in available]
    if not chosen:
        raise InputError(f"none of the text columns {preferred} is in the shards ({available})")
    return chosen


def first_text(row: dict[str, Any], columns: list[str]) -> str | None:
    for column in columns:
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            return value
    return None


class MappedBatches(IterableDataset):
    """Turns each global-batch share of `TrainingRows` into a collated batch:
    `transform(row) -> item | None` per row (None: unusable, dropped from this batch only, so
    every rank still yields the same number of batches), then `collate(items)`."""

    def __init__(
        self,
        source: TrainingRows,
        transform: Callable[[dict[str, Any]], Any],
        collate: Callable[[list[Any]], Any],
    ) -> None:
        super().__init__()
        self.source, self.transform, self.collate = source, transform, collate

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.source.set_epoch(epoch, start_batch)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Any]:
        for rows in self.source:
            items = [item for item in map(self.transform, rows) if item is not None]
            if len(items) < len(rows):
                log.warning("batch: %d rows without usable image or text", len(rows) - len(items))
            if items:
                yield self.collate(items)
            else:  # nothing usable: an empty marker keeps the batch count equal on every rank
                yield {"empty": True}


class PairTransform:
    """row -> (image tensor, text), or None when the row has no image or no text."""

    def __init__(self, preprocess: Callable[..., torch.Tensor], text_columns: list[str]):
        self.preprocess = preprocess
        self.text_columns = text_columns

    def __call__(self, row: dict[str, Any]) -> tuple[torch.Tensor, str] | None:
        text = first_text(row, self.text_columns)
        if not row.get("image") or text is None:
            return None
        try:
            return self.preprocess(row["image"], row.get(SAMPLE_SEED)), text
        except InputError as exc:
            log.warning("row %s: %s", row.get("record_id"), exc)
            return None


class PairCollate:
    def __init__(self, tokenizer: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]):
        self.tokenizer = tokenizer

    def __call__(self, items: list[tuple[torch.Tensor, str]]) -> dict[str, Any]:
        texts = [text for _, text in items]
        ids, mask = self.tokenizer(texts)
        return {
            "images": torch.stack([image for image, _ in items]),
            "ids": ids,
            "mask": mask,
            "texts": texts,
        }


def make_loader(dataset: MappedBatches, num_workers: int, seed: int) -> DataLoader:
    """Batches come whole from the dataset (batch_size=None). The DataLoader gets its own
    generator: otherwise every new iterator draws its base seed from the global torch RNG, and
    a resumed run (one fewer iterator) would see different dropout."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers else None,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def epoch_batches(
    dataset: MappedBatches, loader: DataLoader, start_epoch: int, start_batch: int
) -> Iterator[tuple[int, int, Any]]:
    """Endless (epoch, global batch index, batch); the first epoch starts at `start_batch`,
    skipped by index (nothing before it is read or decoded)."""
    if len(dataset) == 0:
        raise InputError("the training split holds fewer rows than one batch; lower batch_size")
    epoch = start_epoch
    while True:
        dataset.set_epoch(epoch, start_batch)
        for offset, batch in enumerate(loader):
            yield epoch, start_batch + offset, batch
        epoch += 1
        start_batch = 0


def sample_texts(
    data_dir: str | Path, split: str, columns: list[str], limit: int, table: str = "shards"
) -> Iterator[str]:
    """Up to `limit` texts from a split, in shard order (for training a tokenizer)."""
    dataset = load_shards(data_dir, split=split, columns=columns, table=table)
    for count, row in enumerate(dataset):
        if count >= limit:
            return
        for column in columns:
            value = row.get(column)
            if isinstance(value, str) and value:
                yield value
