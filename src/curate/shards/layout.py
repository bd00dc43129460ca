"""Output directory layout, shared by the writer (engine) and the reader (`load_shards`).

OUT/manifest.json
OUT/shards/<split>/part-<split>-<index>.parquet     kept records (the record schema)
OUT/instructions/<split>/part-....parquet           instruction records, when generated
OUT/rejects/part-<index>.parquet                    full record + reason, reject_stage, duplicate_of
OUT/errors/part-<index>.parquet                     source_uri, stage, error_type, reason, message
OUT/attributes/...                                  compact sidecars (embeddings, hashes)
OUT/_work/                                          resumable phase-1 intermediates
"""

from __future__ import annotations

MANIFEST = "manifest.json"
TABLES = ("shards", "instructions")
REJECTS = "rejects"
ERRORS = "errors"
ATTRIBUTES = "attributes"
WORK = "_work"
UNITS = "units"


def shard_name(split: str, index: int, total: int) -> str:
    return f"part-{split}-{index:05d}-of-{total:05d}.parquet"
