"""`curate export webdataset`: a split as WebDataset tar shards, the layout open_clip's
`--train-data 'DIR/train-{000000..000009}.tar'` and img2dataset use.

Each sample is `<key>.jpg` or `<key>.png` (the image bytes; other formats, e.g. TIFF or GIF,
converted to PNG so every trainer decodes them), `<key>.txt` (the text: caption, or the
report's impression/findings) and `<key>.json` (record id, licence, split and the other scalar
columns). Keys are sequential (`000000042`), as img2dataset writes them, because record ids hold
`/` and `.`, which WebDataset reads as folder and extension separators. `sizes.json` gives the
samples per shard (open_clip reads it for the epoch length). Records without an image are
skipped and counted. One row group at a time is in memory.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from curate.errors import SpecError
from curate.export.rows import iter_tables, split_files
from curate.shards import storage

# Text columns in order of preference, per schema: the first present and non-empty is `.txt`.
TEXT_COLUMNS = ("caption", "impression", "findings", "report_text")
IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}
# Scalar columns copied into `.json` (lists and bytes stay in the Parquet shards).
SKIP_JSON = ("image",)


def _webdataset() -> Any:
    try:
        import webdataset
    except ImportError as exc:
        raise SpecError('webdataset is not installed: pip install "curate[webdataset]"') from exc
    return webdataset


def _image(row: dict[str, Any]) -> tuple[str, bytes]:
    """(extension, bytes): JPEG and PNG as stored, anything else re-encoded as PNG."""
    data = row["image"]
    extension = IMAGE_EXTENSIONS.get(str(row.get("image_format") or "").upper())
    if extension:
        return extension, data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "png", buffer.getvalue()


def text_of(row: dict[str, Any], column: str | None = None) -> str:
    if column:
        return str(row.get(column) or "")
    for name in TEXT_COLUMNS:
        if row.get(name):
            return str(row[name])
    return ""


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in row.items()
        if k not in SKIP_JSON and (v is None or isinstance(v, str | int | float | bool))
    }


def export_webdataset(
    out: str,
    dest: str | Path,
    split: str = "train",
    *,
    shard_size: int = 10_000,
    text_column: str | None = None,
) -> dict[str, Any]:
    """Write `dest/<split>-NNNNNN.tar` and `dest/sizes.json`; returns counts."""
    if shard_size < 1:
        raise SpecError(f"--shard-size must be at least 1, not {shard_size}")
    webdataset = _webdataset()
    files = split_files(out, split)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(f"{split}-*.tar"):  # a re-export must not leave extra shards behind
        stale.unlink()
    written = 0
    without_image = 0
    pattern = str(dest / f"{split}-%06d.tar")
    # the build's time as every member's mtime: one build, byte-identical tars
    manifest = json.loads(storage.read_text(storage.join(out, "manifest.json")) or "{}")
    created = manifest.get("created_unix")
    with webdataset.ShardWriter(
        pattern, maxcount=shard_size, verbose=0, mtime=float(created or 0)
    ) as sink:
        for table in iter_tables(files):
            if "image" not in table.column_names:
                raise SpecError(f"{out}: split {split} has no image column to export")
            for row in table.to_pylist():
                if not row.get("image"):
                    without_image += 1
                    continue
                extension, data = _image(row)
                sink.write(
                    {
                        "__key__": f"{written:09d}",
                        extension: data,
                        "txt": text_of(row, text_column),
                        "json": _metadata(row),
                    }
                )
                written += 1
    shards = sorted(dest.glob(f"{split}-*.tar"))
    sizes = {
        shard.name: min(shard_size, written - i * shard_size) for i, shard in enumerate(shards)
    }
    (dest / "sizes.json").write_text(json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    return {
        "out": str(dest),
        "split": split,
        "samples": written,
        "skipped_without_image": without_image,
        "shards": [s.name for s in shards],
    }
