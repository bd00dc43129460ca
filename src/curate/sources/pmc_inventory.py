"""The S3 inventory of the PMC Cloud bucket, read as the cloud layout's partitions.

NCBI publishes a daily S3 inventory of `metadata/` in `pmc-oa-opendata`: one row per article
version, so the versions are known without listing tens of millions of keys. The `inventory`
option of the PMC source names either

- an inventory `manifest.json`: `files[].key` are the CSV shards, as keys of the destination
  bucket (`<dest-prefix>/<source-bucket>/<config-id>/data/<uuid>.csv.gz`), while the manifest
  itself sits at `<dest-prefix>/<source-bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/manifest.json`.
  A key is therefore placed against the manifest's config folder (the folder above its
  timestamp folder): the key's leading folders that end that config folder's path are
  replaced by it. This holds on the bucket itself, for AWS's older `<timestamp>/files/`
  layout, and for a local copy that keeps the folder names; or
- a folder of CSV shards (`*.csv`, `*.csv.gz`, not recursive), a glob of them, or one shard.

A shard has no header; its columns are Bucket, Key, then whatever the inventory adds
(LastModifiedDate, ETag, ...), quoted, with the key URL-encoded. Rows that are not a
`metadata/PMC<id>.<v>.json` key are ignored; a row without a Bucket and Key column, bytes that
are not UTF-8 or a truncated gzip stop the shard with `malformed_metadata`. For a source root
on an object store every row must name the root's bucket (another bucket means the wrong
inventory: `invalid_spec`) and only keys under the root's key prefix count; a local mirror has
no bucket, so its keys are taken relative to the mirror whatever bucket the rows name.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from curate import fs
from curate.errors import MalformedMetadata, MissingFile, SpecError

SHARD_SUFFIXES = (".csv", ".csv.gz")
_METADATA_KEY = re.compile(r"^metadata/((PMC\d+)\.(\d+))\.json$")
_GLOB = re.compile(r"[*?\[]")
_MANIFEST_LIMIT = 64 * 1024 * 1024
_LEADING_COLUMNS = ["Bucket", "Key"]
# What a damaged shard raises while it is read (gzip.BadGzipFile is an OSError, named alone so
# that a failing connection is not reported as a malformed file).
_DAMAGED = (csv.Error, UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile)


# ---- shards ---------------------------------------------------------------------------------


def inventory_shards(inventory: str, source_bucket: str | None) -> list[str]:
    """The CSV shards an `inventory` option names, sorted; each becomes one partition."""
    if inventory.endswith(".json"):
        return manifest_shards(inventory, source_bucket)
    if _GLOB.search(inventory):
        return [p for p in fs.glob(inventory) if p.endswith(SHARD_SUFFIXES)]
    if inventory.endswith(SHARD_SUFFIXES):
        return [inventory]
    if fs.is_local(inventory) and not os.path.isdir(inventory):
        raise MissingFile(f"inventory folder {inventory} does not exist")
    return [p for p in fs.glob(fs.join(inventory, "*")) if p.endswith(SHARD_SUFFIXES)]


def manifest_shards(manifest: str, source_bucket: str | None) -> list[str]:
    doc = _read_manifest(manifest)
    _check_manifest(doc, manifest, source_bucket)
    return sorted(data_file_path(manifest, entry["key"]) for entry in doc["files"])


def _read_manifest(manifest: str) -> dict[str, Any]:
    try:
        data = fs.read_bytes(manifest, limit=_MANIFEST_LIMIT)
    except OSError as exc:
        raise MissingFile(f"inventory manifest {manifest}: {exc}") from exc
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise MalformedMetadata(f"inventory manifest {manifest}: {exc}") from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("key"), str) and f["key"] for f in files
    ):
        raise MalformedMetadata(f"inventory manifest {manifest}: no 'files' list of keys")
    return doc


def _check_manifest(doc: dict[str, Any], manifest: str, source_bucket: str | None) -> None:
    file_format = str(doc.get("fileFormat") or "CSV")
    if file_format.upper() != "CSV":
        raise SpecError(f"inventory {manifest} is {file_format}; only CSV inventories are read")
    columns = [c.strip() for c in str(doc.get("fileSchema") or "Bucket, Key").split(",")]
    if columns[:2] != _LEADING_COLUMNS:
        raise MalformedMetadata(f"inventory manifest {manifest}: fileSchema starts {columns[:2]}")
    listed = doc.get("sourceBucket")
    if source_bucket and listed and listed != source_bucket:
        raise SpecError(
            f"inventory {manifest} lists bucket {listed}, the source reads {source_bucket}"
        )


def data_file_path(manifest: str, key: str) -> str:
    """Where the data file `key` (a key of the destination bucket) is, given the manifest's
    location: the key's leading folders that end the manifest's config-folder path are that
    folder (the longest such run wins)."""
    config_dir = _parent(_parent(manifest))
    config_parts = _segments(config_dir)
    key_parts = key.strip("/").split("/")
    best_end, best_run = 0, 0
    for end in range(len(key_parts) - 1, 0, -1):
        run = _shared_tail(key_parts[:end], config_parts)
        if run > best_run:
            best_end, best_run = end, run
    if not best_run:
        raise MalformedMetadata(
            f"inventory manifest {manifest}: data key {key!r} does not lie under the manifest's "
            "folder; name the folder of its CSV shards as `inventory` instead"
        )
    return fs.join(config_dir, *key_parts[best_end:])


def _parent(path: str) -> str:
    return os.path.dirname(path) if fs.is_local(path) else path.rstrip("/").rsplit("/", 1)[0]


def _segments(path: str) -> list[str]:
    if fs.is_local(path):
        return [p for p in os.path.normpath(os.path.abspath(path)).split(os.sep) if p]
    return [p for p in path.split("://", 1)[1].split("/") if p]


def _shared_tail(first: list[str], second: list[str]) -> int:
    run = 0
    while run < min(len(first), len(second)) and first[-1 - run] == second[-1 - run]:
        run += 1
    return run


# ---- rows -----------------------------------------------------------------------------------


def bucket_and_prefix(root: str) -> tuple[str | None, str]:
    """(bucket, key prefix ending in '/' or empty) of an object-store root; (None, '') locally."""
    if fs.is_local(root):
        return None, ""
    bucket, _, prefix = root.split("://", 1)[1].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def metadata_versions(shard: str, root: str) -> Iterator[tuple[str, str, int]]:
    """(`PMC<id>.<v>` as written in the key, pmcid, version) for each metadata key the shard
    lists under `root`."""
    bucket, prefix = bucket_and_prefix(root)
    try:
        with fs.open_text(shard) as text:
            rows = csv.reader(text)
            for row in rows:
                key = _row_key(row, bucket, f"inventory shard {shard} line {rows.line_num}")
                if key is None or not key.startswith(prefix):
                    continue
                if match := _METADATA_KEY.match(key[len(prefix) :]):
                    yield match[1], match[2], int(match[3])
    except _DAMAGED as exc:
        raise MalformedMetadata(f"inventory shard {shard}: {exc}") from exc
    except FileNotFoundError as exc:
        raise MissingFile(f"inventory shard {shard} does not exist") from exc


def _row_key(row: list[str], bucket: str | None, where: str) -> str | None:
    """The row's object key, URL-decoded; None for a blank line."""
    if not row:
        return None
    if len(row) < 2:
        raise MalformedMetadata(f"{where}: expected Bucket, Key, ... columns, got {row!r:.120}")
    if bucket is not None and row[0] != bucket:
        raise SpecError(f"{where}: row of bucket {row[0]!r}, the source reads bucket {bucket!r}")
    # S3 writes the key URL-encoded; the metadata keys used hold nothing that needs encoding,
    # so how a space is written (`+` or `%20`) does not matter here.
    return unquote_plus(row[1])
