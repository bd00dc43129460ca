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
#
# Candidate generation. Why not the plain pigeonhole (max_hamming + 1 exact blocks)? For
# max_hamming 8 that is 9 blocks of ~7 bits, so a bucket holds ~N/128 hashes and the verification
# is quadratic (hopeless at PMC's ~15M figures). Instead: split the 64 bits into
# m = ceil((max_hamming + 1) / 3) blocks (3 blocks of ~21 bits for max_hamming 8) and key every
# block by its value *and* each one-bit flip of it (its Hamming ball of radius 1, 1 + L keys).
# Exact: two hashes within max_hamming bits cannot differ by >= 3 bits in every block
# (that would be >= 3m > max_hamming), and two block values within 2 bits share a point of their
# radius-1 balls (d=0: itself, d=1: either end, d=2: either midpoint), hence a key. A bucket of a
# 21-bit key holds ~22 N / 2^21 hashes (~160 at 15M, ~10 at 1M) instead of N/128, at 67 keys per
# hash instead of 9 (a bigger Beam shuffle, traded for linear-ish verification). The verification
# (full pHash distance + dHash confirmation) is unchanged, so the groups are exactly those of the
# pairs within the thresholds. In memory the keys are sort-joined in numpy; in Beam each bucket
# emits only the pairs whose smallest shared key is its own (`image_edges_for_key`).


def image_probe_layout(max_hamming: int) -> list[tuple[int, int]]:
    """Bit ranges (lo, hi) of the probed blocks for `max_hamming` (see the comment above)."""
    blocks = min(64, max(1, -(-(max_hamming + 1) // 3)))  # a radius-1 ball covers 2 bits per block
    bounds = np.linspace(0, 64, blocks + 1).astype(int)
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(blocks)]


def image_probe_keys(value: int, max_hamming: int) -> list[tuple[int, int]]:
    """Bucket keys (block index, block value or a one-bit flip of it) of one hash: two hashes
    within `max_hamming` bits share at least one (see the comment above)."""
    keys: list[tuple[int, int]] = []
    for index, (lo, hi) in enumerate(image_probe_layout(max_hamming)):
        block = (value >> lo) & ((1 << (hi - lo)) - 1)
        keys.append((index, block))
        keys.extend((index, block ^ (1 << bit)) for bit in range(hi - lo))
    return keys


# Popcount by 16-bit table (numpy 1.26 has no bitwise_count): 4 lookups per 64-bit word.
_POPCOUNT16 = (
    np.unpackbits(np.arange(1 << 16, dtype=">u2").view(np.uint8))
    .reshape(-1, 16)
    .sum(axis=1, dtype=np.uint8)
)


def _popcount64(values: np.ndarray) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.uint64)
    return _POPCOUNT16[values.view(np.uint16)].reshape(-1, 4).sum(axis=1, dtype=np.int32)


def _block_close_pairs(
    hashes: np.ndarray, lo: int, hi: int, max_hamming: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b), a < b, sharing a probe key of block [lo, hi) and within `max_hamming` bits.

    Sort-join: the N x (1 + L) keys are sorted once and every run of equal keys yields its
    pairs; offset o only walks the runs longer than o, so the work is the number of candidate
    pairs, each verified at once (no candidate list is ever materialised)."""
    width = hi - lo
    dtype = np.uint32 if width <= 32 else np.uint64
    block = ((hashes >> np.uint64(lo)) & np.uint64((1 << width) - 1)).astype(dtype)
    flips = np.r_[0, np.left_shift(1, np.arange(width, dtype=np.uint64))].astype(dtype)
    keys = (block[:, None] ^ flips[None, :]).reshape(-1)
    order = np.argsort(keys)
    ordered = keys[order]
    owner = order // len(flips)  # the hash each sorted key belongs to
    owner_hash = hashes[owner]  # contiguous in sorted order: the offset loop reads it sequentially
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(ordered)])
    starts, sizes = starts[sizes >= 2], sizes[sizes >= 2]
    # sorted positions of the members of runs of size >= 2, each with its run's end
    pos = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
    end = np.repeat(starts + sizes, sizes)
    firsts: list[np.ndarray] = [np.empty(0, np.int64)]
    seconds: list[np.ndarray] = [np.empty(0, np.int64)]
    offset = 1
    while len(pos):
        inside = pos + offset < end
        pos, end = pos[inside], end[inside]
        close = _popcount64(owner_hash[pos] ^ owner_hash[pos + offset]) <= max_hamming
        a, b = owner[pos[close]], owner[pos[close] + offset]
        firsts.append(np.minimum(a, b))
        seconds.append(np.maximum(a, b))
        offset += 1
    return np.concatenate(firsts), np.concatenate(seconds)


def image_close_pairs(hashes: np.ndarray, max_hamming: int) -> np.ndarray:
    """All distinct index pairs (k x 2, a < b, sorted) of `hashes` within `max_hamming` bits:
    probe-key candidates (see above) sort-joined per block, vectorised, verified on all 64 bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    codes = [np.empty(0, np.int64)]
    for lo, hi in image_probe_layout(max_hamming):
        a, b = _block_close_pairs(hashes, lo, hi, max_hamming)
        codes.append(a.astype(np.int64) * n + b)
    pair_codes = np.unique(np.concatenate(codes))
    return np.stack([pair_codes // n, pair_codes % n], axis=1)


def _highest_bit(values: np.ndarray) -> np.ndarray:
    """The highest set bit of each uint64 (0 for 0), by smearing the bits downwards."""
    v = values.copy()
    for shift in (1, 2, 4, 8, 16, 32):
        v |= v >> np.uint64(shift)
    return v ^ (v >> np.uint64(1))


def image_first_shared_key(
    ha: np.ndarray, hb: np.ndarray, max_hamming: int
) -> tuple[np.ndarray, np.ndarray]:
    """The smallest probe key (block index, value) that each hash pair shares (index -1: none).

    A close pair shares up to ~66 keys; the Beam path emits its edge only from this bucket, so
    each pair is verified into one edge, not one per shared key. Within a block at distance
    0 the shared keys are the value's radius-1 ball (smallest: its highest set bit cleared),
    at distance 1 the two values, at distance 2 the two midpoints."""
    ha = np.asarray(ha, dtype=np.uint64)
    hb = np.asarray(hb, dtype=np.uint64)
    index = np.full(len(ha), -1, dtype=np.int64)
    value = np.zeros(len(ha), dtype=np.uint64)
    for i, (lo, hi) in enumerate(image_probe_layout(max_hamming)):
        mask = np.uint64((1 << (hi - lo)) - 1)
        ba, bb = (ha >> np.uint64(lo)) & mask, (hb >> np.uint64(lo)) & mask
        diff = ba ^ bb
        dist = _popcount64(diff)
        low = diff & (~diff + np.uint64(1))
        smallest = np.where(
            dist == 0,
            ba ^ _highest_bit(ba),
            np.where(dist == 1, np.minimum(ba, bb), np.minimum(ba ^ low, ba ^ (diff ^ low))),
        )
        todo = (index < 0) & (dist <= 2)
        index[todo] = i
        value[todo] = smallest[todo]
    return index, value


def _close_pairs(hashes: np.ndarray, max_hamming: int) -> np.ndarray:
    """Index pairs (a < b) within `max_hamming` bits: brute force for a small set (a bucket),
    the probe-key sort-join for a large one."""
    n = len(hashes)
    if n > 2048:
        return image_close_pairs(hashes, max_hamming)
    dist = _popcount64(hashes[:, None] ^ hashes[None, :]).reshape(n, n)
    a, b = np.nonzero(np.triu(dist <= max_hamming, k=1))
    return np.stack([a, b], axis=1)


def _verified_edges(
    members: Sequence[tuple[str, int, float, int | None]],
    max_hamming: int,
    confirm_max: int | None,
    reason: str,
    key: tuple[int, int] | None = None,
) -> list[Edge]:
    """Spanning forest of the pairs of (record_id, hash, rank, confirm_hash) members within
    `max_hamming` pHash bits and, with `confirm_max`, within that many dHash bits. With `key`,
    only the pairs whose first shared probe key is `key` (one bucket of the Beam path)."""
    if confirm_max is not None:
        # A pair needs both dHashes to be confirmed: without one a record links to nothing.
        members = [m for m in members if m[3] is not None]
    if len(members) < 2:
        return []
    members = sorted(members, key=lambda m: m[0])
    ids = [m[0] for m in members]
    ranks = [m[2] for m in members]
    hashes = np.array([m[1] for m in members], dtype=np.uint64)
    confirm = np.array([m[3] if confirm_max is not None else 0 for m in members], dtype=np.uint64)
    uf = UnionFind()
    edges: list[Edge] = []

    def link(i: int, j: int) -> None:
        # Only edges that join new components: a spanning forest is enough for union-find.
        if uf.union(ids[i], ids[j]):
            edges.append(Edge(ids[i], ids[j], reason, ranks[i], ranks[j]))

    def in_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if key is None:
            return np.ones(len(a), dtype=bool)
        index, value = image_first_shared_key(hashes[a], hashes[b], max_hamming)
        return (index == key[0]) & (value == np.uint64(key[1]))

    # Identical (pHash, dHash) members are always linked (distance 0): join them to their first
    # holder directly and compare only distinct values, so huge groups (blank images) stay linear.
    _, first, inverse = np.unique(
        np.stack([hashes, confirm], axis=1), axis=0, return_index=True, return_inverse=True
    )
    holder = first[inverse.reshape(-1)]
    copies = np.flatnonzero(holder != np.arange(len(ids)))
    copies = copies[in_key(holder[copies], copies)]
    for i, j in zip(holder[copies].tolist(), copies.tolist()):
        link(i, j)
    reps = np.sort(first)
    pairs = _close_pairs(hashes[reps], max_hamming)
    a, b = reps[pairs[:, 0]], reps[pairs[:, 1]]
    if confirm_max is not None:
        ok = _popcount64(confirm[a] ^ confirm[b]) <= confirm_max
        a, b = a[ok], b[ok]
    ok = in_key(a, b)
    for i, j in zip(a[ok].tolist(), b[ok].tolist()):
        link(i, j)
    return edges


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
    return _verified_edges(members, max_hamming, confirm_max, reason)


def image_edges_for_key(
    key: tuple[int, int],
    members: Sequence[tuple[str, int, float, int | None]],
    max_hamming: int,
    confirm_max: int | None = None,
    reason: str = IMAGE_REASON,
) -> list[Edge]:
    """`image_edges_in_bucket` for the bucket of probe key `key` (Beam path), keeping only the
    pairs whose first shared key is `key`: every close pair is shared by >= 1 bucket and owned
    by exactly one, so the union over buckets has the same groups and each pair's edge once."""
    return _verified_edges(members, max_hamming, confirm_max, reason, key)


def image_edges(attrs: Iterable[NearAttributes], config: NearDedupConfig) -> list[Edge]:
    """Image edges over all records: pairs within `max_hamming` pHash bits (probe-key sort-join,
    see above) confirmed on dHash, as a spanning forest (same groups as all pairs)."""
    members = [
        (a.record_id, a.image_hash, a.keep_rank(config.keep), a.confirm_hash)
        for a in attrs
        if a.image_hash is not None
    ]
    return _verified_edges(
        members, config.image.max_hamming, config.image.confirm_dhash_max, IMAGE_REASON
    )


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
