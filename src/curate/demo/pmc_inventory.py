"""An S3 inventory of a demo PMC Cloud mirror, shaped like NCBI's daily inventory of
`pmc-oa-opendata`'s `metadata/`: CSV shards (no header; Bucket, Key, LastModifiedDate, ETag,
all quoted) plus a `manifest.json`, under

    <out>/inventory-reports/<bucket>/metadata/<YYYY-MM-DDT01-00Z>/manifest.json
    <out>/inventory-reports/<bucket>/metadata/data/<uuid>.csv[.gz]

with manifest keys relative to `<out>` (the destination bucket). Versions are dealt to the
shards in turn, so the versions of one article land in different shards, as they may in a real
inventory. The real bucket holds a flat `metadata/` copy of every version's JSON, which the
demo mirror has for one article only: `complete_flat_metadata` adds the rest first.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import uuid

_VERSION_DIR = re.compile(r"^PMC\d+\.\d+$")
INVENTORY_DATE = "2026-09-01T01-00Z"
_LAST_MODIFIED = "2026-08-31T12:00:00.000Z"


def complete_flat_metadata(cloud_root: str) -> list[str]:
    """Copy each version folder's `PMC<id>.<v>.json` to `metadata/`, where missing; returns the
    metadata keys (`metadata/PMC<id>.<v>.json`), sorted."""
    flat = os.path.join(cloud_root, "metadata")
    os.makedirs(flat, exist_ok=True)
    for name in sorted(os.listdir(cloud_root)):
        source = os.path.join(cloud_root, name, f"{name}.json")
        target = os.path.join(flat, f"{name}.json")
        if _VERSION_DIR.match(name) and os.path.isfile(source) and not os.path.exists(target):
            shutil.copyfile(source, target)
    return sorted(f"metadata/{n}" for n in os.listdir(flat) if n.endswith(".json"))


def write_inventory(
    cloud_root: str,
    out_dir: str,
    *,
    bucket: str = "pmc-oa-opendata",
    shards: int = 2,
    compress: bool = True,
) -> dict[str, object]:
    """Inventory shards and a manifest listing the mirror's `metadata/` keys; returns the
    manifest path, the shard paths and the keys."""
    keys = sorted(f"metadata/{n}" for n in os.listdir(os.path.join(cloud_root, "metadata")))
    config = f"inventory-reports/{bucket}/metadata"
    rows = [_row(bucket, key, os.path.join(cloud_root, key)) for key in keys]
    files: list[dict[str, object]] = []
    shard_paths: list[str] = []
    for index in range(shards):
        name = f"{_shard_uuid(bucket, index)}.csv"
        body = "".join(rows[index::shards]).encode()
        if compress:
            name, body = f"{name}.gz", gzip.compress(body, mtime=0)
        key = f"{config}/data/{name}"
        shard_paths.append(os.path.join(out_dir, key))
        _write(shard_paths[-1], body)
        files.append({"key": key, "size": len(body), "MD5checksum": _md5(body)})
    manifest = os.path.join(out_dir, config, INVENTORY_DATE, "manifest.json")
    _write(manifest, json.dumps(_manifest(bucket, files), indent=1).encode())
    return {
        "manifest": manifest,
        "shards": shard_paths,
        "keys": keys,
    }


def _row(bucket: str, key: str, path: str) -> str:
    with open(path, "rb") as handle:
        etag = _md5(handle.read())
    return f'"{bucket}","{key}","{_LAST_MODIFIED}","{etag}"\n'


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _shard_uuid(bucket: str, index: int) -> uuid.UUID:
    """A fixed name per shard, so the generated inventory is the same on every run."""
    return uuid.UUID(
        bytes=hashlib.md5(f"{bucket}/{index}".encode(), usedforsecurity=False).digest()
    )


def _manifest(bucket: str, files: list[dict[str, object]]) -> dict[str, object]:
    return {
        "sourceBucket": bucket,
        "destinationBucket": f"arn:aws:s3:::{bucket}",
        "version": "2016-11-30",
        "creationTimestamp": "1788224400000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, LastModifiedDate, ETag",
        "files": files,
    }


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
