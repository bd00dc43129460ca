"""Export instruction shards to LLaVA's conversation JSON, with the images written beside it.

    DIR/llava_<split>.json     [{"id", "image", "conversations": [{"from": "human", "value": "<image>\n..."}, ...]}]
    DIR/images/<sha256>.<ext>  each distinct image once, named by its content hash

Text-only samples get no `image` key and no `<image>` token, as LLaVA's loader expects.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from curate import fs
from curate.errors import CurateError, InputError

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


class ImageNotFound(InputError):
    """An instruction names an image (by hash) that no record shard of its split holds."""

    reason = "image_not_found"


@dataclass
class ExportSummary:
    samples: int = 0
    images_written: int = 0
    text_only: int = 0
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


def iter_rows(files: list[str]) -> Iterator[dict[str, Any]]:
    for path in files:
        with fs.FileSystems.open(path) if not fs.is_local(path) else open(path, "rb") as handle:
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


def _images_from_shards(data_dir: str, split: str, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """(sha256, bytes) for wanted images, read from the split's record shards (instructions
    written with include_image=false keep only the hash)."""
    for path in fs.glob(fs.join(data_dir, "shards", split, "*.parquet")):
        with fs.FileSystems.open(path) if not fs.is_local(path) else open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            if not {"image", "image_sha256"} <= set(parquet.schema_arrow.names):
                continue
            for batch in parquet.iter_batches(columns=["image_sha256", "image"], batch_size=64):
                for row in batch.to_pylist():
                    if row["image_sha256"] in wanted and row["image"]:
                        yield row["image_sha256"], row["image"]


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
        for digest, data in _images_from_shards(data_dir, split, set(pending)):
            if digest in pending:
                _checked_digest(digest, data, digest)
                summary.images_written += _write_image(out_dir, pending.pop(digest), data, written)
        if pending:
            raise ImageNotFound(
                f"{len(pending)} image(s) named by instructions of split {split!r} are in no "
                f"shard under {data_dir}, e.g. sha256 {sorted(pending)[0]}"
            )
    samples.sort(key=lambda s: s["id"])  # stable output whatever the shard order
    summary.samples = len(samples)
    summary.json_path = fs.join(out_dir, f"llava_{split}.json")
    fs.write_bytes_atomic(
        summary.json_path, json.dumps(samples, ensure_ascii=False, indent=1).encode()
    )
    return summary


def default_out(path: str) -> str:
    return os.path.abspath(path) if fs.is_local(path) else path
