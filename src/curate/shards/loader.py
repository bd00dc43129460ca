"""`load_shards()`: stream curated Parquet shards into PyTorch.

Imports neither Beam nor the sources, parsers or rules: a training machine needs pyarrow,
torch and this module only. Work is divided in (file, row group) pieces across distributed
ranks and DataLoader workers; the order is a deterministic function of (seed, epoch).

Trainers read through `curate.shards.training.load_training_batches()` instead: global batches
with equal rows per rank, a shuffle buffer across row groups and files, and resume by index.

Instruction shards reference their image by `image_sha256` (no bytes, by default);
`load_shards(..., table="instructions", attach_images=True)` joins the bytes back from the
record shards of the same split (see `curate.shards.images`).
"""

from __future__ import annotations

import json
import posixpath
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # torch is an extra: a build machine does not need it
    raise ImportError('load_shards needs torch: pip install "curate[loader]"') from exc

from curate.errors import SchemaMismatch
from curate.schema import META_HASH, META_NAME, META_VERSION
from curate.shards import storage
from curate.shards.images import HASH, IMAGE, ImageResolver
from curate.shards.layout import MANIFEST, TABLES


@dataclass(frozen=True)
class Piece:
    path: str
    row_group: int
    rows: int


def _schema_identity(metadata: dict[bytes, bytes] | None) -> tuple[str, str, str]:
    metadata = metadata or {}
    return tuple(metadata.get(k, b"?").decode() for k in (META_NAME, META_VERSION, META_HASH))  # type: ignore[return-value]


class ShardDataset(IterableDataset):
    """Iterable over the rows of one split of one table, as dicts of Python values."""

    def __init__(
        self,
        files: list[str],
        *,
        columns: list[str] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        expected_schema: tuple[str, str, str] | None = None,
        batch_rows: int = 1024,
        images: ImageResolver | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.files = files
        self.columns = columns
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batch_rows = batch_rows
        self.images = images
        self.epoch = 0
        self.pieces: list[Piece] = []
        self.schema_identity: tuple[str, str, str] | None = expected_schema
        for path in files:
            handle = pq.ParquetFile(storage.open_input(path))
            meta = handle.metadata
            identity = _schema_identity(meta.metadata)
            if self.schema_identity is None:
                self.schema_identity = identity
            elif identity != self.schema_identity:
                raise SchemaMismatch(
                    f"{path} was written with schema {identity[0]} v{identity[1]} (hash "
                    f"{identity[2]}); expected {self.schema_identity[0]} v{self.schema_identity[1]}"
                    f" (hash {self.schema_identity[2]})"
                )
            if columns:
                missing = sorted(set(columns) - set(handle.schema_arrow.names))
                if missing:
                    raise KeyError(f"{path}: no columns {missing}")
            for index in range(meta.num_row_groups):
                self.pieces.append(Piece(path, index, meta.row_group(index).num_rows))

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle deterministically for a new epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    def _ordered_pieces(self) -> list[Piece]:
        pieces = sorted(self.pieces, key=lambda p: (posixpath.basename(p.path), p.row_group))
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(pieces)
        return pieces

    def _rank_pieces(self) -> list[Piece]:
        return self._ordered_pieces()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return sum(p.rows for p in self._rank_pieces())

    def _worker_pieces(self) -> list[Piece]:
        pieces = self._rank_pieces()
        info = get_worker_info()
        if info is None:
            return pieces
        return pieces[info.id :: info.num_workers]

    def _attaching(self) -> bool:
        return self.images is not None and (self.columns is None or IMAGE in self.columns)

    def _read_columns(self) -> list[str] | None:
        """The requested columns, plus the hash an attached image is looked up by."""
        if not self._attaching() or self.columns is None or HASH in self.columns:
            return self.columns
        return [*self.columns, HASH]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        images = self.images if self._attaching() else None
        if images is None:
            yield from self._rows()
            return
        drop_hash = self.columns is not None and HASH not in self.columns
        for row in self._rows():
            row = images.attach(row)
            if drop_hash:
                del row[HASH]
            yield row

    def _rows(self) -> Iterator[dict[str, Any]]:
        open_files: dict[str, pq.ParquetFile] = {}
        read_columns = self._read_columns()
        for piece in self._worker_pieces():
            handle = open_files.get(piece.path)
            if handle is None:
                handle = open_files[piece.path] = pq.ParquetFile(storage.open_input(piece.path))
            table = handle.read_row_group(piece.row_group, columns=read_columns)
            names = table.column_names
            columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
            if self.shuffle:
                order = list(range(table.num_rows))
                # The file's basename, not its path: `out` and `/abs/out` give one order.
                file_name = posixpath.basename(str(piece.path).replace("\\", "/"))
                random.Random(f"{self.seed}:{self.epoch}:{file_name}:{piece.row_group}").shuffle(
                    order
                )
                for row in order:
                    yield {name: column[row] for name, column in zip(names, columns)}
            else:
                for values in zip(*columns):
                    yield dict(zip(names, values))

    def to_hf_dataset(self) -> Any:
        """A Hugging Face `datasets.Dataset` over the same files (all ranks' rows), with the
        `image` column as `datasets.Image()` (PIL images on access); referenced instruction
        images are not attached."""
        from curate.shards.hf import hf_dataset  # datasets is optional, imported when asked

        return hf_dataset(self.files, columns=self.columns)


def shard_files(out_dir: str | Path, split: str, table: str = "shards") -> list[str]:
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}")
    return storage.list_files(storage.join(out_dir, table, split), ".parquet")


def load_shards(
    out_dir: str | Path,
    split: str = "train",
    columns: list[str] | None = None,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    table: str = "shards",
    schema: str | None = None,
    attach_images: bool = False,
) -> ShardDataset:
    """Stream `OUT/<table>/<split>/*.parquet` as a torch IterableDataset.

    The schema recorded in the build manifest (or `schema="figure_caption.v1"` when given) must
    match every shard's Parquet metadata exactly (name, version and hash): a reader never
    silently consumes data of another shape.

    `attach_images=True` fills the `image` of rows that carry only `image_sha256` (instruction
    shards written with `instruct.include_image: false`, the default) from the record shards
    `OUT/shards/<split>/`, reading them row group by row group; a hash found in no record shard
    raises `ImageNotFound`. Building the index reads the hash column of that split once.
    """
    files = shard_files(out_dir, split, table)
    if not files:
        raise FileNotFoundError(f"no shards in {storage.join(out_dir, table, split)}")
    expected: tuple[str, str, str] | None = None
    if schema is not None:
        from curate.schema import load_schema

        rs = load_schema(schema)
        expected = (rs.name, str(rs.version), rs.hash)
    else:
        manifest_text = storage.read_text(storage.join(out_dir, MANIFEST))
        if manifest_text is not None:
            recorded = json.loads(manifest_text).get("tables", {}).get(table, {})
            if recorded.get("schema"):
                s = recorded["schema"]
                expected = (s["name"], str(s["version"]), s["hash"])
    return ShardDataset(
        files,
        columns=columns,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        expected_schema=expected,
        images=ImageResolver.for_split(out_dir, split) if attach_images else None,
    )


def decode_image(data: bytes, size: int | None = None, mode: str = "RGB") -> torch.Tensor:
    """Image bytes -> float tensor CxHxW in [0, 1] (grayscale becomes 3 channels in RGB mode)."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        img = opened.convert(mode)
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).float().div_(255.0)
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.unsqueeze(0)
