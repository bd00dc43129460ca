"""Hugging Face dataset-card front matter (the YAML block at the top of a card / README.md):
licence, task categories, size category, language, tags and the Parquet configs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

# Normalised licence (schema field `license`) -> the Hub's licence identifier.
HUB_LICENSES = {
    "CC BY 4.0": "cc-by-4.0",
    "CC BY 3.0": "cc-by-3.0",
    "CC BY 2.0": "cc-by-2.0",
    "CC BY-SA 4.0": "cc-by-sa-4.0",
    "CC BY-NC 4.0": "cc-by-nc-4.0",
    "CC BY-NC-SA 4.0": "cc-by-nc-sa-4.0",
    "CC BY-NC-ND 4.0": "cc-by-nc-nd-4.0",
    "CC BY-ND 4.0": "cc-by-nd-4.0",
    "CC0 1.0": "cc0-1.0",
}
# Record schema -> the Hub's task categories.
TASKS = {
    "figure_caption": ["image-to-text", "zero-shot-image-classification", "feature-extraction"],
    "report_image": ["image-to-text", "image-classification"],
    "volume": ["image-to-text"],
    "instruction": ["visual-question-answering"],
}
SIZE_STEPS: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)


def size_category(records: int) -> str:
    for limit, name in SIZE_STEPS:
        if records < limit:
            return name
    return "n>100M"


def hub_license(licenses: Counter | dict | None) -> dict[str, Any]:
    """`license: x` when every record shares one known licence; otherwise `other`, with the
    mix named (the Hub takes one identifier)."""
    named = {k: v for k, v in (licenses or {}).items() if k}
    ids = {HUB_LICENSES.get(k) for k in named}
    if len(ids) == 1 and None not in ids:
        return {"license": ids.pop()}
    if not named:
        return {"license": "other", "license_name": "see-source-terms"}
    return {
        "license": "other",
        "license_name": "mixed-per-record",
        "license_details": "per record, field `license`: "
        + ", ".join(f"{k} ({v})" for k, v in sorted(named.items(), key=lambda kv: -kv[1])),
    }


def front_matter(
    manifest: dict[str, Any],
    scan: dict[str, Any] | None = None,
    data_files: list[dict[str, str]] | None = None,
) -> str:
    splits = manifest.get("splits") or {}
    kept = sum(splits.values())
    schema = manifest["schema"]["name"]
    licenses = ((scan or {}).get("distributions") or {}).get("license")
    meta: dict[str, Any] = {
        **hub_license(licenses),
        "language": ["en"],
        "pretty_name": manifest["spec"]["name"],
        "task_categories": TASKS.get(schema, ["other"]),
        "size_categories": [size_category(kept)],
        "tags": ["medical", "biology", "curate", schema],
        "configs": [
            {
                "config_name": "default",
                "data_files": data_files
                or [{"split": s, "path": f"shards/{s}/*.parquet"} for s in sorted(splits)],
            }
        ],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"
