"""Numbers the card plots, read from the kept shards without image bytes: text lengths, image
sizes and aspect ratios, and one example record (the first of the train split, with a
thumbnail of its image)."""

from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq

from curate import fs

MAX_ROWS = 200_000
TEXT_COLUMNS = ("caption", "findings", "impression", "report_text")
SIZE_COLUMNS = ("image_width", "image_height")
THUMBNAIL_PX = 320


def _words(text: Any) -> int:
    return len(str(text).split()) if text else 0


def scan_sizes(out_dir: str) -> dict[str, Any]:
    """{"text_words": {column: [words, ...]}, "widths": [...], "heights": [...]} over at most
    MAX_ROWS kept records."""
    text: dict[str, list[int]] = {}
    widths: list[int] = []
    heights: list[int] = []
    seen = 0
    for path in fs.glob(fs.join(out_dir, "shards", "*", "*.parquet")):
        if seen >= MAX_ROWS:
            break
        names = pq.ParquetFile(path).schema_arrow.names
        columns = [c for c in (*TEXT_COLUMNS, *SIZE_COLUMNS) if c in names]
        if not columns:
            continue
        table = pq.read_table(path, columns=columns).slice(0, MAX_ROWS - seen)
        seen += table.num_rows
        data = table.to_pydict()
        for column in TEXT_COLUMNS:
            if column in data:
                text.setdefault(column, []).extend(_words(t) for t in data[column])
        if all(c in data for c in SIZE_COLUMNS):
            for w, h in zip(data["image_width"], data["image_height"]):
                if w and h:
                    widths.append(int(w))
                    heights.append(int(h))
    return {"text_words": text, "widths": widths, "heights": heights}


def thumbnail_png(data: bytes, size: int = THUMBNAIL_PX) -> bytes | None:
    """A small PNG of an image (8-bit, for the card), or None when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.thumbnail((size, size))
            small = opened if opened.mode in ("RGB", "L") else opened.convert("RGB")
            buffer = io.BytesIO()
            small.save(buffer, format="PNG")
            return buffer.getvalue()
    except Exception:  # the card shows the record without its picture
        return None


def example_record(out_dir: str) -> dict[str, Any] | None:
    """The first kept record of the first split (train when present), image as a thumbnail
    under `thumbnail_png`, other bytes and long lists left out."""
    files = sorted(fs.glob(fs.join(out_dir, "shards", "*", "*.parquet")))
    files.sort(key=lambda p: "/shards/train/" not in p.replace("\\", "/"))  # train first
    for path in files:
        handle = pq.ParquetFile(path)
        if handle.metadata.num_rows == 0:
            continue
        row = handle.read_row_group(0).slice(0, 1).to_pylist()[0]
        record: dict[str, Any] = {}
        for key, value in row.items():
            if key == "image" and isinstance(value, bytes):
                record["thumbnail_png"] = thumbnail_png(value)
            elif isinstance(value, bytes):
                record[key] = f"<{len(value)} bytes>"
            elif isinstance(value, list) and len(value) > 5:
                record[key] = [*value[:5], f"... {len(value) - 5} more"]
            else:
                record[key] = value
        return record
    return None
