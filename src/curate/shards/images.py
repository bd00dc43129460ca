"""Images that instruction rows reference by `image_sha256`, fetched from a build's record shards.

Instruction tables keep only the hash of their source image (`instruct.include_image: false`),
so a reader joins the bytes back from `OUT/shards/<split>/`. At PMC scale a split holds millions
of images, so nothing here loads them all: `ImageIndex` reads the `image_sha256` column alone
(a cheap column read) into sorted numpy arrays, 16 bytes per image, and `ImageResolver` reads
the `image` column one row group at a time, keeping a few decoded row groups in a byte-bounded
LRU. Needs pyarrow and numpy only: no Beam, no torch (the LLaVA export uses it too).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.shards import storage

HASH = "image_sha256"
IMAGE = "image"
DEFAULT_CACHE_BYTES = 256 * 2**20

Opener = Callable[[str], IO[bytes]]


class ImageNotFound(InputError):
    """An instruction names an image (by hash) that no record shard of its split holds."""

    reason = "image_not_found"


def open_local(path: str) -> IO[bytes]:
    """Opens a local path or an object-store URI (pyarrow's filesystems, no Beam)."""
    return storage.open_input(path)


def record_shard_files(out_dir: str | Path, split: str) -> list[str]:
    """The record shards of one split: OUT/shards/<split>/*.parquet, local or remote."""
    return storage.list_files(storage.join(out_dir, "shards", split), ".parquet")


def hash_key(digest: str) -> int:
    """The first 8 bytes of a sha256 as an unsigned int: the index's sort key (full hashes are
    compared on fetch, so a shared prefix costs one extra row group read, never a wrong image)."""
    return int(digest[:16], 16)


def _hashes_by_row_group(parquet: pq.ParquetFile) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(row group, keys, rows) for the rows of each row group that carry a hash."""
    for row_group in range(parquet.metadata.num_row_groups):
        digests = parquet.read_row_group(row_group, columns=[HASH]).column(0)
        rows = np.flatnonzero(digests.is_valid().to_numpy(zero_copy_only=False))
        keys = [hash_key(value) for value in digests.drop_null().to_pylist()]
        yield row_group, np.array(keys, dtype=np.uint64), rows.astype(np.int32)


class ImageIndex:
    """image_sha256 -> (file, row group, row), built from the hash column only."""

    def __init__(self, files: list[str], opener: Opener = open_local) -> None:
        self.files = files
        self.pieces: list[tuple[int, int]] = []  # (file index, row group)
        keys = [np.zeros(0, np.uint64)]
        pieces = [np.zeros(0, np.int32)]
        rows = [np.zeros(0, np.int32)]
        for file_index, path in enumerate(files):
            with opener(path) as handle:
                parquet = pq.ParquetFile(handle)
                if HASH not in parquet.schema_arrow.names:
                    continue
                for row_group, group_keys, group_rows in _hashes_by_row_group(parquet):
                    keys.append(group_keys)
                    pieces.append(np.full(len(group_rows), len(self.pieces), dtype=np.int32))
                    rows.append(group_rows)
                    self.pieces.append((file_index, row_group))
        order = np.argsort(np.concatenate(keys), kind="stable")
        self.keys = np.concatenate(keys)[order]
        self.piece = np.concatenate(pieces)[order]
        self.row = np.concatenate(rows)[order]

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, digest: str) -> list[tuple[int, int]]:
        """(piece, row) of every image whose hash starts like `digest`, in shard order."""
        try:
            key = np.uint64(hash_key(digest))
        except ValueError:  # not a hex digest: names no image
            return []
        start = int(np.searchsorted(self.keys, key, side="left"))
        stop = int(np.searchsorted(self.keys, key, side="right"))
        return [(int(self.piece[i]), int(self.row[i])) for i in range(start, stop)]


class RowGroupCache:
    """The (image, image_sha256) columns of recently read row groups, bounded in bytes (the
    newest row group is always kept, however large)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[int, pa.Table] = OrderedDict()
        self.bytes = 0

    def get(self, piece: int) -> pa.Table | None:
        table = self.entries.get(piece)
        if table is not None:
            self.entries.move_to_end(piece)
        return table

    def put(self, piece: int, table: pa.Table) -> None:
        self.entries[piece] = table
        self.bytes += table.nbytes
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            _, evicted = self.entries.popitem(last=False)
            self.bytes -= evicted.nbytes


class ImageResolver:
    """sha256 -> image bytes from a split's record shards, read lazily by row group.

    Picklable: DataLoader workers each get the index (numpy arrays) and an empty cache.
    """

    def __init__(
        self,
        files: list[str],
        *,
        opener: Opener = open_local,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        where: str = "",
    ) -> None:
        self.index = ImageIndex(files, opener)
        self.opener = opener
        self.cache_bytes = cache_bytes
        self.where = where or (str(Path(files[0]).parent) if files else "the record shards")
        self.cache = RowGroupCache(cache_bytes)
        self.row_groups_read = 0

    @classmethod
    def for_split(
        cls, out_dir: str | Path, split: str, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> ImageResolver:
        return cls(
            record_shard_files(out_dir, split),
            cache_bytes=cache_bytes,
            where=storage.join(out_dir, "shards", split),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["cache"] = RowGroupCache(self.cache_bytes)
        return state

    def _row_group(self, piece: int) -> pa.Table:
        table = self.cache.get(piece)
        if table is None:
            file_index, row_group = self.index.pieces[piece]
            with self.opener(self.index.files[file_index]) as handle:
                table = pq.ParquetFile(handle).read_row_group(row_group, columns=[IMAGE, HASH])
            self.row_groups_read += 1
            self.cache.put(piece, table)
        return table

    def _lookup(self, digest: str) -> bytes | None:
        for piece, row in self.index.candidates(digest):
            table = self._row_group(piece)
            if table.column(HASH)[row].as_py() == digest:
                data = table.column(IMAGE)[row].as_py()
                if data:
                    return data
        return None

    def _missing(self, digests: list[str]) -> ImageNotFound:
        return ImageNotFound(
            f"{len(digests)} image(s) named by image_sha256 are in no shard under "
            f"{self.where}, e.g. {sorted(digests)[0]}"
        )

    def __call__(self, digest: str) -> bytes:
        data = self._lookup(digest)
        if data is None:
            raise self._missing([digest])
        return data

    def fetch_many(self, digests: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(sha256, bytes) for each distinct digest, visited in shard order so each row group
        is read once. ImageNotFound before anything is read when a hash is not in the index."""
        located: list[tuple[tuple[int, int], str]] = []
        missing: list[str] = []
        for digest in set(digests):
            found = self.index.candidates(digest)
            if found:
                located.append((found[0], digest))
            else:
                missing.append(digest)
        if missing:
            raise self._missing(missing)
        for _, digest in sorted(located):
            yield digest, self(digest)

    def attach(self, row: dict[str, Any]) -> dict[str, Any]:
        """Fill `image` of a row that carries only `image_sha256` (others pass unchanged)."""
        if row.get(IMAGE) is None and row.get(HASH):
            row[IMAGE] = self(row[HASH])
        return row
