"""Feeding trainers from `load_shards()`: decode images and tokenise text inside DataLoader
workers, batch with a fixed size, and walk epochs deterministically so a resumed run can skip
exactly the batches it has already seen."""

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


class MappedRows(IterableDataset):
    """Applies `transform(row) -> item | None` to each shard row (None: skip and count)."""

    def __init__(self, source: Any, transform: Callable[[dict[str, Any]], Any]) -> None:
        super().__init__()
        self.source = source
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Any]:
        skipped = 0
        for row in self.source:
            item = self.transform(row)
            if item is None:
                skipped += 1
                continue
            yield item
        if skipped:
            log.warning("skipped %d rows without usable image or text", skipped)


class PairTransform:
    """row -> (image tensor, text), or None when the row has no image or no text."""

    def __init__(self, preprocess: Callable[[bytes], torch.Tensor], text_columns: list[str]):
        self.preprocess = preprocess
        self.text_columns = text_columns

    def __call__(self, row: dict[str, Any]) -> tuple[torch.Tensor, str] | None:
        text = first_text(row, self.text_columns)
        if not row.get("image") or text is None:
            return None
        try:
            return self.preprocess(row["image"]), text
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


def make_loader(
    dataset: IterableDataset,
    batch_size: int,
    collate: Callable[[list[Any]], Any],
    num_workers: int,
    drop_last: bool,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers else None,
    )


def epoch_batches(
    dataset: Any, loader: DataLoader, start_epoch: int, skip_batches: int
) -> Iterator[tuple[int, int, Any]]:
    """Endless (epoch, batch index, batch); the first epoch skips `skip_batches` batches."""
    epoch = start_epoch
    while True:
        dataset.set_epoch(epoch)
        produced = 0
        for index, batch in enumerate(loader):
            produced += 1
            if epoch == start_epoch and index < skip_batches:
                continue
            yield epoch, index, batch
        if produced == 0:
            raise InputError("the training split yields no complete batch; lower batch_size")
        epoch += 1
        skip_batches = 0


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
