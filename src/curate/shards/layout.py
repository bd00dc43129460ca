"""Output directory layout, shared by the writer (engine) and the reader (`load_shards`).

OUT/manifest.json
OUT/shards/<split>/part-<split>-<index>.parquet     kept records (the record schema)
OUT/instructions/<split>/part-....parquet           instruction records, when generated
OUT/rejects/part-<index>.parquet                    full record + reason, reject_stage, duplicate_of
OUT/errors/part-<index>.parquet                     source_uri, stage, error_type, reason, message
OUT/attributes/...                                  compact sidecars (embeddings, hashes)
OUT/skipped/part-<index>.parquet                    input units deliberately not read
OUT/instructions_rejects/, instructions_errors/     instruction candidates dropped / failed
OUT/_work/                                          resumable phase-1 intermediates
"""

from __future__ import annotations

import hashlib

MANIFEST = "manifest.json"
TABLES = ("shards", "instructions")
REJECTS = "rejects"
ERRORS = "errors"
ATTRIBUTES = "attributes"
WORK = "_work"
UNITS = "units"
SKIPPED = "skipped"
INSTRUCTIONS = "instructions"
INSTRUCTION_REJECTS = "instructions_rejects"
INSTRUCTION_ERRORS = "instructions_errors"
BENCHMARK_MATCHES = "benchmark_matches.jsonl"  # under ATTRIBUTES
DIGESTS = f"{WORK}/digests"
DATA_CARD = "DATA_CARD.md"
HTML_CARD = "DATA_CARD.html"  # beside the Markdown card: plots, one example image
# Every folder a build writes afresh in phase 2 (a rerun clears them first).
PHASE2_FOLDERS = (
    *TABLES,
    REJECTS,
    ERRORS,
    ATTRIBUTES,
    SKIPPED,
    INSTRUCTION_REJECTS,
    INSTRUCTION_ERRORS,
    DIGESTS,
)
# Everything a build writes at the top of its folder, besides WORK (what `--fresh` removes).
BUILD_ENTRIES = (MANIFEST, DATA_CARD, HTML_CARD, *(f for f in PHASE2_FOLDERS if f != DIGESTS))


def shard_name(split: str, index: int, total: int) -> str:
    return f"part-{split}-{index:05d}-of-{total:05d}.parquet"


def stable_bucket(key: str, buckets: int) -> int:
    """A bucket that does not depend on Python's hash seed (reproducible shards)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % max(1, buckets)
