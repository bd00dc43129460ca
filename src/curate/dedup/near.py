"""Near-duplicate detection on compact attributes: image perceptual hashes and caption MinHash.

The functions here are pure (lists in, edges out) and are what the Beam transforms in
`curate.dedup.beam` call per bucket, so the unit tests exercise the same code the pipeline runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from curate.dedup.config import NearDedupConfig, TextNearConfig
from curate.dedup.groups import Duplicate, Edge, UnionFind, resolve
from curate.dedup.imagehash import (
    hamming_matrix,
    hamming_to,
    hash_blocks,
    image_hashes,
    open_image,
)
from curate.dedup.minhash import MinHasher, lsh_band_keys, word_tokens
from curate.errors import InputError
from curate.stages import Record

IMAGE_REASON = "near_duplicate_image"
CAPTION_REASON = "near_duplicate_caption"


@dataclass(frozen=True)
class NearAttributes:
    """What near-dedup needs from a record: no image bytes travel past this point."""

    record_id: str
    image_hash: int | None
    pixels: int
    text: str | None
    confirm_hash: int | None = None  # dHash, to confirm pHash candidates

    def keep_rank(self, keep: str) -> float:
        return float(self.pixels) if keep == "highest_resolution" else 0.0


def record_text(record: Record, fields: Sequence[str]) -> str | None:
    """The first non-empty text field of the record (caption for figures, report for studies)."""
    for name in fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def near_attributes(record: Record, config: NearDedupConfig) -> NearAttributes:
    """Compact attributes of one record. An unreadable image simply takes no part in image dedup
    (decoding failures are the image-validation stage's business, not a reason to drop here)."""
    record_id = str(record["record_id"])
    hash_value: int | None = None
    confirm: int | None = None
    data = record.get("image")
    if config.image.enabled and data:
        methods: tuple[str, ...] = (config.image.hash,)
        if config.image.confirm_dhash_max is not None:
            methods += ("dhash",)
        try:
            hashes = image_hashes(data, methods, config.image.max_pixels)
        except InputError:
            hashes = {}
        hash_value = hashes.get(config.image.hash)
        if config.image.confirm_dhash_max is not None:
            confirm = hashes.get("dhash")
    width = record.get("image_width") or 0
    height = record.get("image_height") or 0
    if hash_value is not None and not (width and height) and data:
        # No size columns: read it from the header (already known to be readable).
        width, height = open_image(data, config.image.max_pixels).size
    text = record_text(record, config.caption.fields) if config.caption.enabled else None
    return NearAttributes(record_id, hash_value, int(width) * int(height), text, confirm)


# ---- image edges ----------------------------------------------------------------------------


def image_block_keys(value: int, max_hamming: int) -> list[tuple[int, int]]:
    return hash_blocks(value, max_hamming + 1)


def image_edges_in_bucket(
    members: Sequence[tuple[str, int, float, int | None]],
    max_hamming: int,
    confirm_max: int | None = None,
    reason: str = IMAGE_REASON,
) -> list[Edge]:
    """Edges between (record_id, hash, rank, confirm_hash) members within `max_hamming` bits.

    With `confirm_max`, a pair must also be within that many bits on the second hash (dHash):
    white-background charts share pHash low frequencies but not dHash gradients
    (dedup_quality.py: unrelated charts at pHash <= 8 all had dHash >= 8; copies <= 6).
    """
    if len(members) < 2:
        return []
    members = sorted(members, key=lambda m: m[0])
    ids = [m[0] for m in members]
    hashes = np.array([m[1] for m in members], dtype=np.uint64)
    ranks = [m[2] for m in members]
    confirm = [m[3] for m in members]
    edges: list[Edge] = []
    uf = UnionFind()
    chunk = 512  # bounds the distance matrix at 512 x n
    for lo in range(0, len(ids), chunk):
        block = hashes[lo : lo + chunk]
        dist = hamming_to(block, hashes)
        rows, cols = np.nonzero(dist <= max_hamming)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = lo + r
            # Each pair once, and only edges that join new components: a spanning forest is
            # enough for union-find and keeps big groups (blank images) linear, not quadratic.
            if i >= c or uf.same(ids[i], ids[c]):
                continue
            if confirm_max is not None and (
                confirm[i] is None
                or confirm[c] is None
                or (confirm[i] ^ confirm[c]).bit_count() > confirm_max
            ):
                continue
            uf.union(ids[i], ids[c])
            edges.append(Edge(ids[i], ids[c], reason, ranks[i], ranks[c]))
    return edges


def image_edges(attrs: Iterable[NearAttributes], config: NearDedupConfig) -> list[Edge]:
    buckets: dict[tuple[int, int], list[tuple[str, int, float, int | None]]] = defaultdict(list)
    for a in attrs:
        if a.image_hash is None:
            continue
        for key in image_block_keys(a.image_hash, config.image.max_hamming):
            buckets[key].append(
                (a.record_id, a.image_hash, a.keep_rank(config.keep), a.confirm_hash)
            )
    edges: list[Edge] = []
    for key in sorted(buckets):
        edges.extend(
            image_edges_in_bucket(
                buckets[key], config.image.max_hamming, config.image.confirm_dhash_max
            )
        )
    return edges


# ---- caption edges --------------------------------------------------------------------------


def text_hasher(config: TextNearConfig) -> MinHasher:
    return MinHasher(config.num_perm, config.seed, config.shingle, config.shingle_size)


def eligible_text(text: str | None, config: TextNearConfig) -> bool:
    """Very short captions ("Figure 1", "CT scan") say nothing about the record being a copy."""
    return bool(text) and len(word_tokens(text or "")) >= config.min_tokens


def text_edges_in_bucket(
    members: Sequence[tuple[str, np.ndarray, float]],
    min_jaccard: float,
    reason: str = CAPTION_REASON,
) -> list[Edge]:
    """Verify LSH candidates: edges between members whose estimated Jaccard >= `min_jaccard`."""
    if len(members) < 2:
        return []
    members = sorted(members, key=lambda m: m[0])
    sigs = np.stack([m[1] for m in members])
    uf = UnionFind()
    edges: list[Edge] = []
    # Identical signatures (boilerplate captions, normal reports) link to their first holder
    # directly; only distinct signatures are compared pairwise, so big buckets stay cheap.
    _, first, inverse = np.unique(sigs, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    for j, group in enumerate(inverse.tolist()):
        i = int(first[group])
        if i != j and uf.union(members[i][0], members[j][0]):
            edges.append(Edge(members[i][0], members[j][0], reason, members[i][2], members[j][2]))
    reps = np.sort(first)
    rep_sigs = sigs[reps]
    for x in range(len(reps)):
        same = (rep_sigs[x + 1 :] == rep_sigs[x]).mean(axis=1) >= min_jaccard
        for offset in np.flatnonzero(same).tolist():
            i, j = int(reps[x]), int(reps[x + 1 + offset])
            if uf.union(members[i][0], members[j][0]):
                edges.append(
                    Edge(members[i][0], members[j][0], reason, members[i][2], members[j][2])
                )
    return edges


def text_signatures(
    attrs: Sequence[NearAttributes],
    config: TextNearConfig,
    hasher: MinHasher | None = None,
) -> tuple[list[NearAttributes], np.ndarray]:
    hasher = hasher or text_hasher(config)
    chosen = [a for a in attrs if eligible_text(a.text, config)]
    sigs = hasher.signatures([a.text or "" for a in chosen]).values
    return chosen, sigs


def caption_edges(attrs: Sequence[NearAttributes], config: NearDedupConfig) -> list[Edge]:
    chosen, sigs = text_signatures(attrs, config.caption)
    if not chosen:
        return []
    keys = lsh_band_keys(sigs, config.caption.bands, config.caption.rows)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in range(len(chosen)):
        for band in range(keys.shape[1]):
            buckets[(band, int(keys[i, band]))].append(i)
    edges: list[Edge] = []
    for key in sorted(buckets):
        idx = buckets[key]
        if len(idx) < 2:
            continue
        members = [(chosen[i].record_id, sigs[i], chosen[i].keep_rank(config.keep)) for i in idx]
        edges.extend(text_edges_in_bucket(members, config.caption.min_jaccard))
    return edges


# ---- the whole near-dedup pass ------------------------------------------------------------


def find_near_duplicates(
    records: Iterable[Record],
    config: NearDedupConfig | None = None,
    extra_edges: Iterable[Edge] = (),
) -> list[Duplicate]:
    """Records to drop (with reason and the kept record's id); every other record is kept.

    `extra_edges` lets semantic dedup join the same groups, so one representative survives
    across all methods.
    """
    config = config or NearDedupConfig()
    if not config.enabled:
        return resolve(extra_edges)
    attrs = [near_attributes(r, config) for r in records]
    return find_near_duplicates_from_attributes(attrs, config, extra_edges)


def find_near_duplicates_from_attributes(
    attrs: Sequence[NearAttributes],
    config: NearDedupConfig,
    extra_edges: Iterable[Edge] = (),
) -> list[Duplicate]:
    ids = [a.record_id for a in attrs]
    if len(set(ids)) != len(ids):
        raise ValueError("near-dedup needs unique record ids (run exact dedup first)")
    edges: list[Edge] = []
    if config.image.enabled:
        edges.extend(image_edges(attrs, config))
    if config.caption.enabled:
        edges.extend(caption_edges(attrs, config))
    edges.extend(extra_edges)
    return resolve(edges)


__all__ = [
    "CAPTION_REASON",
    "IMAGE_REASON",
    "NearAttributes",
    "caption_edges",
    "find_near_duplicates",
    "find_near_duplicates_from_attributes",
    "hamming_matrix",
    "image_edges",
    "near_attributes",
]
