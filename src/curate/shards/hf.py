"""Hugging Face `datasets` views of curated shards, with images as `datasets.Image()` (decoded
to PIL on access) instead of raw bytes.

- `hf_dataset(files)`: what `load_shards(...).to_hf_dataset()` returns;
- `export_hf(out, dest)`: a folder of Parquet files (`data/<split>-NNNNN-of-NNNNN.parquet`)
  whose schema metadata carries the `datasets` features, plus a README.md with the configs, so
  that `datasets.load_dataset(dest)` (or `load_dataset("parquet", data_files=...)`) returns
  decoded images. One shard row group at a time is held in memory.

Imports no Beam and no torch; `datasets` is imported only when called (extra `train`/`hf`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import SpecError
from curate.shards import storage

IMAGE_COLUMN = "image"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise SpecError('Hugging Face datasets is not installed: pip install "curate[hf]"') from exc
    return datasets


def _has_image_bytes(schema: pa.Schema) -> bool:
    if IMAGE_COLUMN not in schema.names:
        return False
    kind = schema.field(IMAGE_COLUMN).type
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def with_image_feature(dataset: Any) -> Any:
    """`dataset` with its `image` bytes column cast to `datasets.Image()`."""
    datasets = _datasets()
    if _has_image_bytes(dataset.data.schema):
        return dataset.cast_column(IMAGE_COLUMN, datasets.Image())
    return dataset


def hf_dataset(files: list[str], columns: list[str] | None = None) -> Any:
    datasets = _datasets()
    return with_image_feature(datasets.Dataset.from_parquet(files, columns=columns))


def _dataset_of(table: pa.Table) -> Any:
    datasets = _datasets()
    return with_image_feature(datasets.Dataset(datasets.table.InMemoryTable(table)))


def export_hf(out: str, dest: str | Path, splits: list[str] | None = None) -> dict[str, Any]:
    """Write `dest/data/<split>-*.parquet` and `dest/README.md`; returns counts per split."""
    from curate.export.rows import iter_tables, split_files

    manifest = json.loads(storage.read_text(storage.join(out, "manifest.json")) or "null")
    if manifest is None:
        raise SpecError(f"{out} holds no manifest.json: is it a finished build folder?")
    chosen = splits or sorted(manifest["splits"])
    dest = Path(dest)
    (dest / "data").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in chosen:
        files = split_files(out, split)
        counts[split] = 0
        for index, path in enumerate(files):
            target = dest / "data" / f"{split}-{index:05d}-of-{len(files):05d}.parquet"
            writer = None
            for table in iter_tables([path]):
                dataset = _dataset_of(table)
                # the features ride in the schema metadata: load_dataset decodes images from it
                schema = dataset.features.arrow_schema
                if writer is None:
                    writer = pq.ParquetWriter(str(target), schema, compression="zstd")
                writer.write_table(dataset.data.table.cast(schema))
                counts[split] += len(dataset)
            if writer is not None:
                writer.close()
    (dest / "README.md").write_text(_readme(manifest, chosen))
    return {"out": str(dest), "splits": counts}


def _readme(manifest: dict[str, Any], splits: list[str]) -> str:
    from curate.datacard.frontmatter import front_matter

    data_files = [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]
    return (
        front_matter(manifest, data_files=data_files)
        + f"\n# {manifest['spec']['name']}\n\nExported by `curate export hf` from a curate build; "
        "see the build's DATA_CARD.md for what was kept, dropped and why.\n"
    )
