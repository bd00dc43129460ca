"""Near-dup attributes as a compact sidecar: computed once where records are read (phase 1,
per task), so phase 2 groups small rows instead of decoding images and MinHashing captions.

A row holds what `NearDuplicates(config, from_sidecar=True)` needs, and nothing else:

    record_id     string
    image_hash    uint64, null   the perceptual hash (`image.hash`); null: no usable image
    confirm_hash  uint64, null   the dHash confirming it (null when confirmation is off)
    pixels        int64          width x height (the `highest_resolution` keep rank)
    signature     list<uint32>, null   the caption's MinHash (`MinHasher.signatures` dtype,
                                 stored losslessly: verification compares them exactly); null
                                 when the caption is not eligible (`eligible_text`)
    thumb         binary, null   `thumb_size`^2 bytes: the grayscale thumbnail stretched to
                                 0..255 that confirms image candidates (curate.dedup.confirm);
                                 null without an image or with confirmation off
    cues          uint64, null   the caption's cue key (numbers+units, laterality, negation)
    figure_key    string, null   <pmcid>/<figure id>: graphics of one figure share it
    crop_hashes   list<uint64>, null   pHashes of the image's central `crop.scales`
    crop_thumb    binary, null   `crop.thumb_size`^2 bytes: the thumbnail crop boxes are aligned
                                 on (curate.dedup.crops); both null with crops off
    aspect        float64, null  width / height of the decoded image
    gradient_hash uint64, null   SimHash of the thumbnail's gradients (candidates whose pHash
                                 is unstable; curate.dedup.confirm.gradient_hash)

The rows depend on the config that made them (hash method, MinHash parameters, eligibility):
the schema carries a fingerprint of those settings (`near_sidecar_fingerprint`), so a reader
can tell a sidecar made under other settings and recompute it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from curate.dedup.caption_lsh import SignatureBatch
from curate.dedup.config import NearDedupConfig, TextNearConfig
from curate.dedup.minhash import MinHasher
from curate.dedup.near import NearAttributes, eligible_text, near_attributes
from curate.stages import Record

FINGERPRINT_KEY = b"curate.near_sidecar"


def near_sidecar_fingerprint(config: NearDedupConfig) -> str:
    """The settings a sidecar row depends on, as canonical JSON (thresholds are left out: they
    apply in phase 2 and can change without recomputing the sidecar)."""
    image, caption = config.image, config.caption
    settings = {
        "image": {
            "enabled": image.enabled,
            "hash": image.hash,
            "confirm": image.confirm_dhash_max is not None,
            "max_pixels": image.max_pixels,
            "thumb": image.thumb_size if image.confirm_gradient_min is not None else None,
            "crop": (
                [image.crop.scales, image.crop.offsets, image.crop.thumb_size]
                if image.crop.enabled
                else None
            ),
            "gradient_hash": image.gradient_hash_max is not None,
        },
        "caption": {
            "enabled": caption.enabled,
            "fields": list(caption.fields),
            "shingle": caption.shingle,
            "shingle_size": caption.shingle_size,
            "num_perm": caption.num_perm,
            "seed": caption.seed,
            "min_tokens": caption.min_tokens,
            "cues": [sorted(caption.laterality_words), sorted(caption.negation_words)],
        },
    }
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def near_sidecar_schema(config: NearDedupConfig) -> pa.Schema:
    """The sidecar's columns (see the module docstring), with the config's fingerprint."""
    return pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("image_hash", pa.uint64()),
            pa.field("confirm_hash", pa.uint64()),
            pa.field("pixels", pa.int64(), nullable=False),
            pa.field("signature", pa.list_(pa.uint32())),
            pa.field("thumb", pa.binary()),
            pa.field("cues", pa.uint64()),
            pa.field("figure_key", pa.string()),
            pa.field("crop_hashes", pa.list_(pa.uint64())),
            pa.field("crop_thumb", pa.binary()),
            pa.field("aspect", pa.float64()),
            pa.field("gradient_hash", pa.uint64()),
        ],
        metadata={FINGERPRINT_KEY: near_sidecar_fingerprint(config).encode()},
    )


def near_sidecar_matches(schema: pa.Schema, config: NearDedupConfig) -> bool:
    """Whether a sidecar (its Parquet schema) was made under settings giving `config`'s rows."""
    metadata = schema.metadata or {}
    return metadata.get(FINGERPRINT_KEY) == near_sidecar_fingerprint(config).encode()


@lru_cache(maxsize=8)
def _shared_hasher(num_perm: int, seed: int, shingle: str, size: int) -> MinHasher:
    # one per setting and process: its token-hash cache carries over from batch to batch
    return MinHasher(num_perm, seed, shingle, size)


def _hasher(config: TextNearConfig) -> MinHasher:
    # the parameters `text_hasher` (NearDuplicates' own MinHash) uses
    return _shared_hasher(config.num_perm, config.seed, config.shingle, config.shingle_size)


def near_sidecar_rows(records: Sequence[Record], config: NearDedupConfig) -> list[dict[str, Any]]:
    """Sidecar rows of a batch of full records: images hashed one by one, the eligible
    captions MinHashed in one vectorised call. Signatures are uint32 arrays."""
    attrs = [near_attributes(record, config) for record in records]
    rows = [
        {
            "record_id": a.record_id,
            "image_hash": a.image_hash,
            "confirm_hash": a.confirm_hash,
            "pixels": a.pixels,
            "signature": None,
            "thumb": a.thumb,
            "cues": a.cues,
            "figure_key": a.figure_key,
            "crop_hashes": None if a.crop_hashes is None else list(a.crop_hashes),
            "crop_thumb": a.crop_thumb,
            "aspect": a.aspect,
            "gradient_hash": a.gradient_hash,
        }
        for a in attrs
    ]
    eligible = [i for i, a in enumerate(attrs) if eligible_text(a.text, config.caption)]
    if eligible:
        texts = [attrs[i].text or "" for i in eligible]
        signatures = _hasher(config.caption).signatures(texts).values
        for i, signature in zip(eligible, signatures):
            rows[i]["signature"] = signature
    return rows


def near_sidecar_table(rows: Iterable[Mapping[str, Any]], config: NearDedupConfig) -> pa.Table:
    """Sidecar rows as an Arrow table of `near_sidecar_schema(config)` (for a Parquet file)."""
    return pa.Table.from_pylist(list(rows), schema=near_sidecar_schema(config))


# ---- reading rows back (what NearDuplicates(from_sidecar=True) does per row / batch) -------


def sidecar_attributes(row: Mapping[str, Any]) -> NearAttributes:
    """A sidecar row as NearAttributes for the image path (the caption travels as its
    signature, not as text)."""
    crop = row.get("crop_hashes")
    return NearAttributes(
        record_id=str(row["record_id"]),
        image_hash=None if row.get("image_hash") is None else int(row["image_hash"]),
        pixels=int(row.get("pixels") or 0),
        text=None,
        confirm_hash=None if row.get("confirm_hash") is None else int(row["confirm_hash"]),
        thumb=row.get("thumb"),
        cues=None if row.get("cues") is None else int(row["cues"]),
        figure_key=row.get("figure_key"),
        crop_hashes=None if crop is None else tuple(int(h) for h in crop),
        crop_thumb=row.get("crop_thumb"),
        aspect=None if row.get("aspect") is None else float(row["aspect"]),
        gradient_hash=None if row.get("gradient_hash") is None else int(row["gradient_hash"]),
    )


def sidecar_signature_batch(
    rows: Sequence[Mapping[str, Any]], config: NearDedupConfig
) -> SignatureBatch:
    """Rows with a signature (lists or arrays, as Parquet readers give them) as one batch."""
    num_perm = config.caption.num_perm
    if not rows:
        return SignatureBatch([], np.zeros((0, num_perm), np.uint32), np.zeros(0))
    signatures = np.array([row["signature"] for row in rows], dtype=np.uint32)
    if signatures.ndim != 2 or signatures.shape[1] != num_perm:
        raise ValueError(
            f"near sidecar signatures have shape {signatures.shape}, the config needs "
            f"{num_perm} values per signature: recompute the sidecar with this config"
        )
    ranks = np.array(
        [sidecar_attributes(row).keep_rank(config.keep) for row in rows], dtype=np.float64
    )
    return SignatureBatch([str(row["record_id"]) for row in rows], signatures, ranks)


__all__ = [
    "FINGERPRINT_KEY",
    "near_sidecar_fingerprint",
    "near_sidecar_matches",
    "near_sidecar_rows",
    "near_sidecar_schema",
    "near_sidecar_table",
    "sidecar_attributes",
    "sidecar_signature_batch",
]
