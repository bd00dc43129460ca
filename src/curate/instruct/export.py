"""Export instruction shards to LLaVA's conversation JSON, with the images written beside it.

    DIR/llava_<split>.json     [{"id", "image", "conversations": [{"from": "human", "value": "<image>\n..."}, ...]}]
    DIR/images/<sha256>.<ext>  each distinct image once, named by its content hash

Text-only samples get no `image` key and no `<image>` token, as LLaVA's loader expects.
Instructions that carry only `image_sha256` (the default, `instruct.include_image: false`) get
their bytes from the record shards of the same split, each row group read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow.parquet as pq

from curate import fs
from curate.errors import CurateError, InputError
from curate.shards.images import ImageResolver

EXTENSIONS = {
    "JPEG": "jpg",
    "JPG": "jpg",
    "PNG": "png",
    "TIFF": "tif",
    "GIF": "gif",
    "BMP": "bmp",
    "WEBP": "webp",
}
IMAGE_TOKEN = "<image>"
COLUMNS = ["record_id", "image", "image_sha256", "image_format", "conversations"]


class NoInstructionShards(CurateError):
    """No instruction shards were found for the requested split."""

    reason = "no_instruction_shards"


class ImageHashMismatch(InputError):
    """Image bytes do not hash to the image_sha256 stored beside them."""

    reason = "image_hash_mismatch"


@dataclass
class ExportSummary:
    samples: int = 0
    images_written: int = 0
    text_only: int = 0
    shard_row_groups_read: int = 0  # record-shard row groups read to resolve referenced images
    json_path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def instruction_files(data_dir: str, split: str) -> list[str]:
    """Instruction shards of one split: OUT/instructions/<split>/ (the lead's layout), or
    OUT/shards/instructions/<split>/ (older layout), searched recursively."""
    files: list[str] = []
    for base in (
        fs.join(data_dir, "instructions", split),
        fs.join(data_dir, "shards", "instructions", split),
    ):
        files += [
            p
            for p in fs.glob(fs.join(base, "*.parquet")) + fs.glob(fs.join(base, "**", "*.parquet"))
            if p not in files
        ]
    return sorted(set(files))


def open_any(path: str) -> IO[bytes]:
    return fs.FileSystems.open(path) if not fs.is_local(path) else open(path, "rb")


def iter_rows(files: list[str]) -> Iterator[dict[str, Any]]:
    for path in files:
        with open_any(path) as handle:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(columns=COLUMNS, batch_size=256):
                yield from batch.to_pylist()


def to_llava(row: dict[str, Any], image_name: str | None) -> dict[str, Any]:
    turns = [{"from": t["from"], "value": t["value"]} for t in row["conversations"]]
    sample: dict[str, Any] = {"id": row["record_id"]}
    if image_name is not None:
        sample["image"] = image_name
        if turns and IMAGE_TOKEN not in turns[0]["value"]:
            turns[0]["value"] = f"{IMAGE_TOKEN}\n{turns[0]['value']}"
    sample["conversations"] = turns
    return sample


def _image_name(digest: str, image_format: str | None) -> str:
    return f"images/{digest}.{EXTENSIONS.get(str(image_format or '').upper(), 'bin')}"


def _write_image(out_dir: str, name: str, data: bytes, written: set[str]) -> int:
    if name in written:
        return 0
    written.add(name)
    target = fs.join(out_dir, name)
    if fs.exists(target):
        return 0
    fs.write_bytes_atomic(target, data)
    return 1


def _checked_digest(record_id: str, data: bytes, stored: str | None) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if stored and stored != digest:
        raise ImageHashMismatch(
            f"{record_id}: image bytes hash to {digest}, stored image_sha256 is {stored}"
        )
    return digest


def _resolve_from_shards(
    data_dir: str, split: str, pending: dict[str, str], out_dir: str, written: set[str]
) -> tuple[int, int]:
    """Write the images that instructions name only by hash, read from the split's record
    shards; (images written, row groups read). ImageNotFound when one is in no shard."""
    base = fs.join(data_dir, "shards", split)
    resolver = ImageResolver(fs.glob(fs.join(base, "*.parquet")), opener=open_any, where=base)
    count = 0
    for digest, data in resolver.fetch_many(pending):
        _checked_digest(digest, data, digest)
        count += _write_image(out_dir, pending[digest], data, written)
    return count, resolver.row_groups_read


def export_llava(data_dir: str, split: str, out_dir: str) -> ExportSummary:
    files = instruction_files(data_dir, split)
    if not files:
        raise NoInstructionShards(f"no instruction shards for split {split!r} under {data_dir}")
    summary = ExportSummary()
    written: set[str] = set()
    samples: list[dict[str, Any]] = []
    pending: dict[str, str] = {}  # sha256 -> image name, for rows that carry only the hash
    for row in iter_rows(files):
        image_name = None
        if row.get("image"):
            digest = _checked_digest(row["record_id"], row["image"], row.get("image_sha256"))
            image_name = _image_name(digest, row.get("image_format"))
            summary.images_written += _write_image(out_dir, image_name, row["image"], written)
        elif row.get("image_sha256"):
            image_name = _image_name(row["image_sha256"], row.get("image_format"))
            if image_name not in written:
                pending[row["image_sha256"]] = image_name
        else:
            summary.text_only += 1
        samples.append(to_llava(row, image_name))
    if pending:
        resolved, summary.shard_row_groups_read = _resolve_from_shards(
            data_dir, split, pending, out_dir, written
        )
        summary.images_written += resolved
    samples.sort(key=lambda s: s["id"])  # stable output whatever the shard order
    summary.samples = len(samples)
    summary.json_path = fs.join(out_dir, f"llava_{split}.json")
    fs.write_bytes_atomic(
        summary.json_path, json.dumps(samples, ensure_ascii=False, indent=1).encode()
    )
    return summary


def default_out(path: str) -> str:
    return os.path.abspath(path) if fs.is_local(path) else path
