"""Training order over a split's shards: one global, deterministic row order per epoch, cut into
global batches that every rank and DataLoader worker takes its share of.

Why a separate reader from `ShardDataset`: distributed training needs (a) equal rows per rank, or
DDP ranks run out of batches at different steps and hang; (b) a shuffle wider than one row group,
or the same neighbours share every batch each epoch; (c) resume by index, without reading or
decoding what was already trained on.

The order of epoch e (MDS/webdataset-style block shuffle):
1. the (file, row group) pieces, named by file *basename* and row group so the order does not
   depend on how the folder was spelled (`out`, `./out`, `/abs/out`, `gs://b/out`), are shuffled
   with a generator seeded by (seed, e);
2. their rows, laid end to end, are cut into windows of `buffer_rows` and each window is shuffled
   (seeded by (seed, e, window)); a reader holds at most the pieces of about one window.
3. the order is cut into global batches of `batch_size` rows; the rows left over (fewer than one
   batch) are **dropped** for this epoch (different rows each epoch, since the order changes);
4. global batch b goes to ranks as its positions r, r + world, r + 2*world, ... so every rank gets
   `batch_size / world` rows of every batch, and a 2-rank run sees the same global batches as a
   1-rank run; a rank's local batches are dealt round-robin to its DataLoader workers, which the
   DataLoader reads back round-robin, so the batch sequence is the same for any worker count.

Items are whole batches (lists of row dicts): an unusable row removes itself from its batch
only, never shifts later batches. Each row carries `SAMPLE_SEED`, a number fixed by
(seed, epoch, position) for augmentations, so they are the same after resume whatever the worker
count. Reads go through `curate.shards.storage`: `s3://`, `gs://` work as local paths do.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import IterableDataset, get_worker_info

from curate.shards import storage
from curate.shards.loader import Piece, ShardDataset, load_shards

SAMPLE_SEED = "_sample_seed"
# why: 8 row groups of the default 512 rows mix rows of 8 random places per window while one
# window of image bytes (~200 KB each at PMC scale) stays under 1 GB per reader.
DEFAULT_BUFFER_ROWS = 4096


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text (Python's hash() is salted per process)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def piece_key(piece: Piece) -> tuple[str, int]:
    return posixpath.basename(str(piece.path).replace("\\", "/")), piece.row_group


class EpochOrder:
    """The rows of one epoch as global positions -> (piece, row in piece), computed from the
    Parquet footers only (nothing is read to skip)."""

    def __init__(self, pieces: list[Piece], seed: int, epoch: int, buffer_rows: int) -> None:
        ordered = sorted(pieces, key=piece_key)
        permutation = np.random.default_rng(stable_seed(seed, epoch, "pieces")).permutation(
            len(ordered)
        )
        self.pieces = [ordered[i] for i in permutation]
        rows = np.array([p.rows for p in self.pieces], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(rows)])
        self.total = int(self.starts[-1])
        self.seed, self.epoch, self.buffer_rows = seed, epoch, max(1, buffer_rows)
        self._window: tuple[int, np.ndarray] | None = None

    def _window_order(self, window: int) -> np.ndarray:
        if self._window is None or self._window[0] != window:
            start = window * self.buffer_rows
            size = min(self.buffer_rows, self.total - start)
            rng = np.random.default_rng(stable_seed(self.seed, self.epoch, "window", window))
            self._window = (window, start + rng.permutation(size))
        return self._window[1]

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(piece indices, rows within the pieces) of ascending global positions."""
        concatenated = np.empty(len(positions), dtype=np.int64)
        windows = positions // self.buffer_rows
        for window in np.unique(windows):
            chosen = windows == window
            order = self._window_order(int(window))
            concatenated[chosen] = order[positions[chosen] - int(window) * self.buffer_rows]
        pieces = np.searchsorted(self.starts, concatenated, side="right") - 1
        return pieces, concatenated - self.starts[pieces]


class TrainingRows(IterableDataset):
    """Global batches of one epoch, this rank's share, from `start_batch` on (see module doc)."""

    def __init__(
        self,
        source: ShardDataset,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
    ) -> None:
        super().__init__()
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} does not split over {world_size} ranks")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.source, self.batch_size, self.rank, self.world_size = (
            source,
            batch_size,
            rank,
            world_size,
        )
        self.seed, self.buffer_rows = seed, buffer_rows
        self.local_batch = batch_size // world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Epoch to read and the number of its global batches already trained on (skipped by
        index: nothing before them is read)."""
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        return sum(p.rows for p in self.source.pieces) // self.batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch()

    def rows_before(self, batch: int) -> int:
        """This rank's rows in the epoch's first `batch` global batches (its data position)."""
        return batch * self.local_batch

    def rank_positions(self, batch: int) -> range:
        """Global positions of this rank's rows in global batch `batch`."""
        start = batch * self.batch_size + self.rank
        return range(start, (batch + 1) * self.batch_size, self.world_size)

    def _my_batches(self) -> range:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return range(self.start_batch + worker, self.batches_per_epoch(), workers)

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        order = EpochOrder(self.source.pieces, self.seed, self.epoch, self.buffer_rows)
        reader = _PieceReader(self.source)
        epoch_seed = stable_seed(self.seed, self.epoch, "samples")
        for batch in self._my_batches():
            positions = np.asarray(self.rank_positions(batch), dtype=np.int64)
            pieces, rows = order.locate(positions)
            batch_rows: list[dict[str, Any]] = [{}] * len(positions)
            seeds = (positions + 0).tolist()
            # Row group by row group: one column pass per group instead of per-row lookups.
            for piece in np.unique(pieces).tolist():
                slots = np.flatnonzero(pieces == piece)
                got = reader.rows(order.pieces[piece], piece, rows[slots])
                for slot, values in zip(slots.tolist(), got):
                    values[SAMPLE_SEED] = epoch_seed + seeds[slot]
                    batch_rows[slot] = values
            window_start = (batch * self.batch_size // self.buffer_rows) * self.buffer_rows
            reader.forget_until(window_start, order)
            yield batch_rows


class _PieceReader:
    """Row groups read whole (the requested columns only) and kept while the reader's window
    still needs them."""

    def __init__(self, source: ShardDataset) -> None:
        self.source = source
        self.columns = source._read_columns()
        self.files: dict[str, pq.ParquetFile] = {}
        self.tables: dict[int, tuple[list[str], list[list[Any]]]] = {}
        self.attach = source.images if source._attaching() else None
        self.drop_hash = source.columns is not None and "image_sha256" not in source.columns

    def rows(self, piece: Piece, index: int, rows: np.ndarray) -> list[dict[str, Any]]:
        """The given rows of one row group, as dicts (images attached when asked)."""
        table = self.tables.get(index)
        if table is None:
            handle = self.files.get(piece.path)
            if handle is None:
                handle = self.files[piece.path] = pq.ParquetFile(storage.open_input(piece.path))
            read = handle.read_row_group(piece.row_group, columns=self.columns)
            table = self.tables[index] = (
                read.column_names,
                [read.column(i).to_pylist() for i in range(read.num_columns)],
            )
        names, columns = table
        picks = rows.tolist()
        picked = [[column[r] for r in picks] for column in columns]
        out = [dict(zip(names, values)) for values in zip(*picked)]
        if self.attach is not None:
            out = [self.attach.attach(values) for values in out]
            if self.drop_hash:
                for values in out:
                    values.pop("image_sha256", None)
        return out

    def forget_until(self, offset: int, order: EpochOrder) -> None:
        """Drop row groups that end before `offset` of the epoch's row sequence (the start of
        the current window): positions only grow, so they are never needed again."""
        for index in [i for i in self.tables if int(order.starts[i + 1]) <= offset]:
            del self.tables[index]


def load_training_batches(
    out_dir: Any,
    batch_size: int,
    *,
    split: str = "train",
    columns: list[str] | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    buffer_rows: int = DEFAULT_BUFFER_ROWS,
    table: str = "shards",
    attach_images: bool = False,
) -> TrainingRows:
    """`load_shards()` for training: global batches of `batch_size` rows (this rank's
    `batch_size / world_size` of each), equal per rank, shuffled across row groups and files,
    resumable by index with `set_epoch(epoch, start_batch)`. Use with `DataLoader(...,
    batch_size=None)`."""
    source = load_shards(
        out_dir, split=split, columns=columns, table=table, attach_images=attach_images
    )
    return TrainingRows(
        source, batch_size, rank=rank, world_size=world_size, seed=seed, buffer_rows=buffer_rows
    )
