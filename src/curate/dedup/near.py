"""Near-duplicate detection on compact attributes: image perceptual hashes and caption MinHash.

The functions here are pure (lists in, edges out) and are what the Beam transforms in
`curate.dedup.beam` call per group of buckets, so the unit tests exercise the same code the
pipeline runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from curate.dedup.config import NearDedupConfig, TextNearConfig
from curate.dedup.confirm import (
    CROP_CANDIDATE,
    PairConfirmer,
    caption_cues,
    figure_key,
    gradient_hash,
)
from curate.dedup.crops import crop_members, crop_signals
from curate.dedup.groups import Duplicate, Edge, UnionFind, resolve
from curate.dedup.imagehash import (
    decode_gray,
    gray_signals,
    hamming_matrix,
    open_image,
    popcount64,
    popcount_inplace,
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
    thumb: bytes | None = None  # thumbnail for the finer check (curate.dedup.confirm)
    cues: int | None = None  # the caption's cue key (curate.dedup.confirm.caption_cues)
    figure_key: str | None = None  # graphics of one figure share it
    crop_hashes: tuple[int, ...] | None = None  # centre-crop pHashes (curate.dedup.crops)
    crop_thumb: bytes | None = None  # the finer thumbnail crop boxes are aligned on
    aspect: float | None = None  # width / height: a crop box must give the other's shape
    gradient_hash: int | None = None  # SimHash of the thumbnail's gradients (candidates)

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
    thumb: bytes | None = None
    crop_hashes: tuple[int, ...] | None = None
    crop_thumb: bytes | None = None
    decoded: tuple[int, int] | None = None
    data = record.get("image")
    if config.image.enabled and data:
        methods: tuple[str, ...] = (config.image.hash,)
        if config.image.confirm_dhash_max is not None:
            methods += ("dhash",)
        thumb_size = (
            config.image.thumb_size if config.image.confirm_gradient_min is not None else None
        )
        try:
            gray = decode_gray(data, (128, 128), config.image.max_pixels)
            hashes, thumb = gray_signals(gray, methods, thumb_size)
            if config.image.crop.enabled:
                crop_hashes, crop_thumb = crop_signals(gray, config.image.crop)
            decoded = gray.size
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
    # the shape of the decoded image (JPEG draft decoding keeps it within a pixel or two)
    aspect = decoded[0] / decoded[1] if decoded and hash_value is not None else None
    text = record_text(record, config.caption.fields) if config.caption.enabled else None
    cues = caption_cues(text, config.caption) if eligible_text(text, config.caption) else None
    return NearAttributes(
        record_id,
        hash_value,
        int(width) * int(height),
        text,
        confirm,
        thumb if hash_value is not None else None,
        cues,
        figure_key(record),
        crop_hashes if hash_value is not None else None,
        crop_thumb if hash_value is not None else None,
        aspect,
        _gradient_hash(thumb if hash_value is not None else None, config),
    )


def _gradient_hash(thumb: bytes | None, config: NearDedupConfig) -> int | None:
    image = config.image
    if image.gradient_hash_max is None or image.confirm_gradient_min is None:
        return None
    return gradient_hash(thumb, image.thumb_size)


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
# 21-bit key holds ~22 N / 2^21 hashes (~160 at 15M, ~10 at 1M) instead of N/128.
#
# Groups need only a spanning forest of the close pairs (pHash within max_hamming and, with
# confirmation, dHash within confirm_dhash_max), so `_Forest` keeps a union-find on numpy arrays
# and records only the pairs that join two components: O(n) edges whatever the data. Work stays
# near-linear on hard data (a tight cluster of distinct hashes: blank-ish figures,
# white-background charts, the slices of one CT series) because a bucket is handled by its size:
# - up to a limit (a few times the bucket size of uniform hashes), all its pairs are verified,
#   vectorised over all small buckets at once;
# - the members of larger buckets are searched again with probe keys on their dHash (an edge
#   needs both hashes close, so those keys are exact too, and they split a pHash-tight cluster
#   into its dHash neighbourhoods); what is still large is linked by `_link_dense`, which
#   compares a batch of members with the members not yet in their component, so a dense
#   cluster is absorbed in a step or two and its other buckets are skipped at once; a large
#   bucket that stays sparse (far-apart hashes sharing one block) is split by probe keys on
#   its other bits. No pair list is ever materialised.
# Keys are packed with their owner into uint64 codes and sorted by partition, a partition being
# a block and the top bits of the key (a hash's keys fall in its own partition and, through the
# flip of one top bit, in one neighbour per top bit): `chunk_size` bounds the keys sorted and
# the pairs compared at once, besides ~100 bytes per hash (a tight cluster, whose keys crowd
# into one partition, needs ~500). The Beam path groups hashes by the same partitions, one call
# per group for all its buckets (`image_group_keys`, `image_edges_for_group`).

ImageGroup = tuple[int, int, int]  # (block index, number of top key bits, their value)

_MIN_BUCKET_LIMIT = 32  # buckets up to this size (or 4x the uniform size) verify all pairs
_DENSE_BATCH = 64  # members compared at once against the rest of a large bucket
_OWNER_BITS = 32  # a code is key << 32 | owner: keys are <= 32 bits (>= 2 blocks)


@lru_cache(maxsize=256)  # asked for every hash a record holds: the layouts are few
def _probe_blocks(width: int, max_bits: int) -> tuple[tuple[int, int], ...]:
    """Bit ranges (lo, hi) splitting `width` bits into probed blocks for `max_bits` (see the
    comment above); at least two, so that a key fits 32 bits."""
    blocks = min(width, max(2, -(-(max_bits + 1) // 3)))  # a radius-1 ball covers 2 bits a block
    bounds = np.linspace(0, width, blocks + 1).astype(int)
    return tuple((int(bounds[i]), int(bounds[i + 1])) for i in range(blocks))


def image_probe_layout(max_hamming: int) -> tuple[tuple[int, int], ...]:
    """Bit ranges (lo, hi) of the probed blocks of a 64-bit hash for `max_hamming`."""
    return _probe_blocks(64, max_hamming)


def image_probe_keys(value: int, max_hamming: int) -> list[tuple[int, int]]:
    """Bucket keys (block index, block value or a one-bit flip of it) of one hash: two hashes
    within `max_hamming` bits share at least one (see the comment above)."""
    keys: list[tuple[int, int]] = []
    for index, (lo, hi) in enumerate(image_probe_layout(max_hamming)):
        block = (value >> lo) & ((1 << (hi - lo)) - 1)
        keys.append((index, block))
        keys.extend((index, block ^ (1 << bit)) for bit in range(hi - lo))
    return keys


def image_group_bits(count: int, max_hamming: int, group_size: int) -> int:
    """Top key bits of the Beam groups, so that a group holds about `group_size` of `count`
    hashes: (1 + bits) * count / 2^bits (its own and one neighbour per top bit)."""
    width = min(hi - lo for lo, hi in image_probe_layout(max_hamming))
    bits = 0
    while bits < width and (1 + bits) * count > group_size << bits:
        bits += 1
    return bits


def image_group_keys(value: int, max_hamming: int, bits: int) -> list[ImageGroup]:
    """The groups holding `value`'s probe keys: per block, the group of its top `bits` bits and
    the groups of each one-bit flip of them (the keys that flip a top bit land there)."""
    groups: list[ImageGroup] = []
    for index, (lo, hi) in enumerate(image_probe_layout(max_hamming)):
        top = ((value >> lo) & ((1 << (hi - lo)) - 1)) >> (hi - lo - bits)
        groups.append((index, bits, top))
        groups.extend((index, bits, top ^ (1 << bit)) for bit in range(bits))
    return groups


_VERIFY_SLICE = 1 << 16  # candidate pairs verified per step: the passes stay in cache


class _Forest:
    """Union-find over hash values 0..n-1 (a numpy parent array) that records the pairs joining
    two components: given close pairs, it keeps a spanning forest of them."""

    def __init__(
        self,
        hashes: np.ndarray,
        confirm: np.ndarray | None,
        max_hamming: int,
        confirm_max: int | None,
        chunk: int,
    ) -> None:
        self.hashes = hashes
        self.confirm = confirm if confirm_max is not None else None
        self.max_hamming = max_hamming
        self.confirm_max = confirm_max
        self.chunk = chunk
        self.parent = np.arange(len(hashes), dtype=np.int64)
        # the last large bucket linked that held each value: a later bucket whose members all
        # sat in one such bucket has no pair left to link
        self.bucket_of = np.full(len(hashes), -1, dtype=np.int64)
        self.large_buckets = 0
        self.firsts: list[np.ndarray] = [np.empty(0, np.int64)]
        self.seconds: list[np.ndarray] = [np.empty(0, np.int64)]

    def roots(self, x: np.ndarray) -> np.ndarray:
        parent = self.parent
        root = parent[x]
        while True:
            up = parent[root]
            if np.array_equal(up, root):
                break
            root = up
        parent[x] = root  # compress the paths walked
        return root

    def confirmed(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (a[k], b[k]) within the dHash threshold (all of them without one)."""
        if self.confirm is None:
            return a, b
        ok = popcount_inplace(self.confirm[a] ^ self.confirm[b]) <= self.confirm_max
        return a[ok], b[ok]

    def close(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether each pair (a[k], b[k]) is within both thresholds (arrays of any shape)."""
        ok = popcount_inplace(self.hashes[a] ^ self.hashes[b]) <= self.max_hamming
        if self.confirm is not None:
            ok &= popcount_inplace(self.confirm[a] ^ self.confirm[b]) <= self.confirm_max
        return ok

    def link(self, a: np.ndarray, b: np.ndarray) -> None:
        """Union the close pairs (a[k], b[k]), recording one pair per component joined.

        Vectorised hooking: per round every root that is the larger end of a pair hooks onto
        the smallest root it meets (parents only decrease, so no cycle); the rest is retried."""
        while len(a):
            ra, rb = self.roots(a), self.roots(b)
            apart = ra != rb
            a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
            if not len(a):
                return
            high, low = np.maximum(ra, rb), np.minimum(ra, rb)
            order = np.lexsort((low, high))
            sorted_high = high[order]
            hooks = order[np.r_[True, sorted_high[1:] != sorted_high[:-1]]]
            self.parent[high[hooks]] = low[hooks]
            self.firsts.append(a[hooks])
            self.seconds.append(b[hooks])
            rest = np.ones(len(a), dtype=bool)
            rest[hooks] = False
            a, b = a[rest], b[rest]

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.firsts), np.concatenate(self.seconds)


def _bucket_limit(count: int, width: int) -> int:
    """Largest bucket whose pairs are all verified: a few times the size of a bucket of `count`
    uniform hashes ((width + 1) count / 2^width), so that only real clusters go dense."""
    return max(_MIN_BUCKET_LIMIT, (4 * (width + 1) * count) >> width)


def _partition_codes(
    block: np.ndarray, owners: np.ndarray, width: int, bits: int, top: int
) -> np.ndarray:
    """Codes (key << 32 | owner) of the probe keys of `block` values whose top `bits` bits are
    `top`: all of a value's own partition's keys, one key of a neighbour's (its top-bit flip)."""
    shift = width - bits
    delta = (block >> np.uint64(shift)) ^ np.uint64(top)
    home = delta == 0
    flips = np.r_[0, np.left_shift(1, np.arange(shift, dtype=np.uint64))].astype(np.uint64)
    home_keys = (block[home, None] ^ flips[None, :]).reshape(-1)
    home_owners = np.repeat(owners[home], len(flips))
    near = ~home & (popcount64(delta) == 1)
    near_keys = block[near] ^ (delta[near] << np.uint64(shift))
    keys = np.concatenate([home_keys, near_keys])
    codes_owners = np.concatenate([home_owners, owners[near]]).astype(np.uint64)
    return (keys << np.uint64(_OWNER_BITS)) | codes_owners


def _block_partitions(
    block: np.ndarray, owners: np.ndarray, width: int, scope: ImageGroup | None, chunk: int
) -> Iterator[np.ndarray]:
    """Key codes of the `width`-bit `block` values of `owners`, one partition at a time: the
    scope's group (all keys without one), split by further top bits until a partition holds
    about `chunk` keys."""
    bits, top = (scope[1], scope[2]) if scope is not None else (0, 0)
    sub_bits = bits
    while sub_bits < width and len(owners) * (width + 1) > chunk << (sub_bits - bits):
        sub_bits += 1
    tops = block >> np.uint64(width - sub_bits)
    order = np.argsort(tops, kind="stable")
    sorted_tops = tops[order]
    flips = np.left_shift(1, np.arange(sub_bits, dtype=np.uint64))
    extra = sub_bits - bits
    for part in range(top << extra, (top + 1) << extra):
        wanted = np.r_[np.uint64(part), np.uint64(part) ^ flips]
        starts = np.searchsorted(sorted_tops, wanted, "left")
        ends = np.searchsorted(sorted_tops, wanted, "right")
        sel = order[np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])]
        if len(sel) > 1:
            yield _partition_codes(block[sel], owners[sel], width, sub_bits, part)


def _block_values(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (values >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)


class _Runs(NamedTuple):
    """Buckets as runs: their members one after the other, and each run's start and size."""

    members: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    def buckets(self) -> Iterator[np.ndarray]:
        for start, size in zip(self.starts.tolist(), self.sizes.tolist()):
            yield self.members[start : start + size]

    def select(self, keep: np.ndarray) -> _Runs:
        return _runs(self.members, self.starts[keep], self.sizes[keep])


def _runs(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> _Runs:
    """The runs values[start : start + size], gathered one after the other."""
    positions = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
    return _Runs(values[positions], np.cumsum(sizes) - sizes, sizes)


def _link_small_buckets(forest: _Forest, codes: np.ndarray, limit: int) -> _Runs:
    """Verify every pair of each bucket of up to `limit` members (runs of equal keys in the
    sorted codes) and link the close ones; return the larger buckets.

    Members are ordered by how many follow them in their bucket, so the members compared at
    offset o (with the one o places later) are a prefix: the work is the number of candidate
    pairs, sequential, and no pair list is materialised."""
    codes.sort()
    keys = codes >> np.uint64(_OWNER_BITS)
    owners = (codes & np.uint64((1 << _OWNER_BITS) - 1)).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    big = sizes > limit
    large = _runs(owners, starts[big], sizes[big])
    small = (sizes >= 2) & ~big
    starts, sizes = starts[small], sizes[small]
    if not len(sizes):
        return large
    # sorted positions of the members of small runs, and how many follow each in its run
    pos = _runs(np.arange(len(codes)), starts, sizes).members
    later = np.repeat(starts + sizes, sizes) - pos - 1
    small_ints = np.uint16 if limit < 1 << 16 else np.uint32
    by_later = np.argsort((limit - later).astype(small_ints), kind="stable")  # radix sort
    pos, later = pos[by_later], later[by_later]
    active = np.searchsorted(-later, -np.arange(1, int(later[0]) + 1), side="right")
    values = forest.hashes[owners]  # in sorted order: the offset loop reads it sequentially
    first_values = values[pos]
    for offset, count in enumerate(active.tolist(), start=1):
        for lo in range(0, count, _VERIFY_SLICE):
            hi = min(count, lo + _VERIFY_SLICE)
            near = popcount_inplace(first_values[lo:hi] ^ values[pos[lo:hi] + offset])
            hits = pos[lo:hi][near <= forest.max_hamming]
            if len(hits):
                a, b = owners[hits], owners[hits + offset]
                forest.link(*forest.confirmed(a, b))
    return large


def _link_among(forest: _Forest, rows: np.ndarray) -> None:
    """Link the close pairs among a few members (all pairs compared)."""
    i, j = np.nonzero(np.triu(forest.close(rows[:, None], rows[None, :]), k=1))
    forest.link(rows[i], rows[j])


def _link_across(forest: _Forest, rows: np.ndarray, cols: np.ndarray) -> None:
    """Link the close pairs between `rows` and `cols`, a batch of rows at a time; a batch of one
    component first drops the columns already in it, and links each column once."""
    for start in range(0, len(rows), _DENSE_BATCH):
        batch = rows[start : start + _DENSE_BATCH]
        batch_roots = forest.roots(batch)
        single = bool((batch_roots == batch_roots[0]).all())
        if single:
            cols = cols[forest.roots(cols) != batch_roots[0]]
        if not len(cols):
            return
        step = max(1, forest.chunk // len(batch))
        for col_start in range(0, len(cols), step):
            block = cols[col_start : col_start + step]
            close = forest.close(batch[:, None], block[None, :])
            if single:
                j = np.flatnonzero(close.any(axis=0))
                i = close[:, j].argmax(axis=0)
            else:
                i, j = np.nonzero(close)
            forest.link(batch[i], block[j])


def _link_dense(forest: _Forest, members: np.ndarray, max_steps: int = -1) -> np.ndarray:
    """Link the close pairs of a large bucket without listing its pairs; return the members
    left after `max_steps` steps (-1: all, nothing is left).

    Rows (the first components in order, about a batch of members, or one whole component)
    are compared with each other and with every later member; then they leave. Every pair is
    compared or already in one component, so the groups are exact; a dense cluster joins one
    component at the first step, and the next step finds nothing left to compare."""
    pending = members
    while len(pending) > 1 and max_steps != 0:
        roots = forest.roots(pending)
        if (roots == roots[0]).all():
            return pending[:0]
        _, first, inverse, counts = np.unique(
            roots, return_index=True, return_inverse=True, return_counts=True
        )
        by_appearance = np.argsort(first)
        cumulative = np.cumsum(counts[by_appearance])
        taken = max(1, int(np.searchsorted(cumulative, _DENSE_BATCH, side="right")))
        chosen_groups = np.zeros(len(first), dtype=bool)
        chosen_groups[by_appearance[:taken]] = True
        chosen = chosen_groups[inverse.reshape(-1)]
        rows, pending = pending[chosen], pending[~chosen]
        if taken > 1:
            _link_among(forest, rows)
        _link_across(forest, rows, pending)
        max_steps -= 1
    return pending


class _Family(NamedTuple):
    """A hash the edge predicate bounds: its values (one per distinct member) and threshold."""

    values: np.ndarray
    max_bits: int


def _link_by_other_bits(
    forest: _Forest, members: np.ndarray, family: _Family, lo: int, hi: int
) -> None:
    """Link the close pairs of members that share a key of block [lo, hi) but are mostly far
    apart: a close pair is within `max_bits` on the other bits too, so probe keys on those
    split the bucket exactly (the 'split by further bits' of a sparse bucket)."""
    values = family.values[members]
    other = values & np.uint64((1 << lo) - 1)
    if hi < 64:  # (a shift by 64 is undefined)
        other |= (values >> np.uint64(hi)) << np.uint64(lo)
    width = 64 - (hi - lo)
    for sub_lo, sub_hi in _probe_blocks(width, family.max_bits):
        block = _block_values(other, sub_lo, sub_hi)
        limit = _bucket_limit(len(members), sub_hi - sub_lo)
        for codes in _block_partitions(block, members, sub_hi - sub_lo, None, forest.chunk):
            for large in _link_small_buckets(forest, codes, limit).buckets():
                _link_dense(forest, large)  # (large sub-buckets are dense in practice)


def _all_equal_in_runs(values: np.ndarray, runs: _Runs) -> np.ndarray:
    """Per run, whether its `values` are all one non-negative value."""
    low = np.minimum.reduceat(values, runs.starts)
    return (low == np.maximum.reduceat(values, runs.starts)) & (low >= 0)


def _link_large_buckets(forest: _Forest, runs: _Runs, family: _Family, lo: int, hi: int) -> None:
    """Large buckets of the last family, dropping, at once for all that remain, those with
    nothing left to link: all members in one component (a tight cluster once its first bucket
    is linked) or all in one bucket already linked (the buckets of one shared block value).
    They are linked in waves of 1, 2, 4, ... buckets, checking the rest after each wave."""
    wave = 1
    while len(runs.starts):
        done = _all_equal_in_runs(forest.roots(runs.members), runs)
        done |= _all_equal_in_runs(forest.bucket_of[runs.members], runs)
        runs = runs.select(np.flatnonzero(~done))
        for members in runs.select(np.arange(min(wave, len(runs.starts)))).buckets():
            _link_large_bucket(forest, members, family, lo, hi)
        runs = runs.select(np.arange(min(wave, len(runs.starts)), len(runs.starts)))
        wave *= 2


def _link_large_bucket(
    forest: _Forest, members: np.ndarray, family: _Family, lo: int, hi: int
) -> None:
    """A bucket over the limit: one dense step absorbs a tight cluster; if many components are
    still apart, the bucket is split by keys on its other bits instead of compared pairwise."""
    seen = forest.bucket_of[members]
    if seen[0] >= 0 and (seen == seen[0]).all():
        return  # all in one bucket already linked (the buckets of a shared block value)
    rest = _link_dense(forest, members, max_steps=1)
    if len(rest) > _DENSE_BATCH and len(np.unique(forest.roots(rest))) > _DENSE_BATCH:
        _link_by_other_bits(forest, rest, family, lo, hi)
    else:
        _link_dense(forest, rest)
    forest.bucket_of[members] = forest.large_buckets
    forest.large_buckets += 1


def _link_candidates(
    forest: _Forest,
    idx: np.ndarray,
    families: list[_Family],
    scope: ImageGroup | None,
    count: int,
) -> None:
    """Link every close pair among `idx` sharing a probe key of the first family within
    `scope` (a Beam group; None: every key). Members of large buckets are searched again with
    the next family's keys (exact too: an edge needs every hash close), or, for the last
    family, bucket by bucket (`_link_large_bucket`)."""
    family = families[0]
    deferred = np.zeros(len(forest.parent), dtype=bool)
    for index, (lo, hi) in enumerate(_probe_blocks(64, family.max_bits)):
        if scope is not None and scope[0] != index:
            continue
        limit = _bucket_limit(count, hi - lo)
        block = _block_values(family.values[idx], lo, hi)
        for codes in _block_partitions(block, idx, hi - lo, scope, forest.chunk):
            large = _link_small_buckets(forest, codes, limit)
            if len(families) > 1:
                deferred[large.members] = True
            else:
                _link_large_buckets(forest, large, family, lo, hi)
    rest = np.flatnonzero(deferred)
    if len(rest) > 1:
        _link_candidates(forest, rest, families[1:], None, len(rest))


def _distinct_holders(hashes: np.ndarray, confirm: np.ndarray) -> np.ndarray:
    """For each member, the first member with the same (hash, confirm) values."""
    order = np.lexsort((confirm, hashes))  # stable: the first of equal values comes first
    h, c = hashes[order], confirm[order]
    new = np.r_[True, (h[1:] != h[:-1]) | (c[1:] != c[:-1])]
    run_start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    holder = np.empty_like(order)
    holder[order] = order[run_start]
    return holder


def _link_records(
    forest: _Forest, holder: np.ndarray, reps: np.ndarray, records: np.ndarray
) -> None:
    """Link the distinct values (`reps`) that members of one record hold. A pair it records may
    name other records holding the same values: those are linked to it at distance 0 anyway."""
    value_of = np.empty(len(holder), dtype=np.int64)
    value_of[reps] = np.arange(len(reps))
    member_value = value_of[holder]
    order = np.argsort(records, kind="stable")
    same = records[order][1:] == records[order][:-1]
    forest.link(member_value[order][:-1][same], member_value[order][1:][same])


def image_forest(
    hashes: np.ndarray,
    confirm: np.ndarray | None,
    max_hamming: int,
    confirm_max: int | None = None,
    chunk: int = 1 << 18,
    scope: ImageGroup | None = None,
    count: int | None = None,
    records: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a, b) forming a spanning forest of the pairs of `hashes` within
    `max_hamming` bits and, with `confirm_max`, of `confirm` (dHash) within that many bits;
    every member must have a confirm hash then. With `scope`, only the pairs sharing a probe key
    of that Beam group (plus identical values); `count` is the size of the whole set.

    `records` (a record index per member, for records with several hashes: crop windows): the
    members of one record start linked, so the forest joins records, and a bucket of one
    record's hashes, or of records already joined, is done without comparing its pairs."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if confirm_max is None or confirm is None:
        confirm, confirm_max = np.zeros(len(hashes), dtype=np.uint64), None
    confirm = np.asarray(confirm, dtype=np.uint64)
    if len(hashes) >= 1 << _OWNER_BITS:
        raise ValueError("image near-dup handles < 2^32 distinct hashes per call")
    # Identical (pHash, dHash) values are always linked (distance 0): join them to their first
    # holder directly and search only distinct values, so huge groups (blank images) stay linear.
    holder = _distinct_holders(hashes, confirm)
    copies = np.flatnonzero(holder != np.arange(len(hashes)))
    reps = np.flatnonzero(holder == np.arange(len(hashes)))
    forest = _Forest(hashes[reps], confirm[reps], max_hamming, confirm_max, chunk)
    if records is not None:
        _link_records(forest, holder, reps, np.asarray(records))
    families = [_Family(forest.hashes, max_hamming)]
    if forest.confirm is not None and confirm_max is not None:
        families.append(_Family(forest.confirm, confirm_max))
    if count is None:
        count = len(reps)
    _link_candidates(forest, np.arange(len(reps)), families, scope, count)
    a, b = forest.edges()
    return np.r_[holder[copies], reps[a]], np.r_[copies, reps[b]]


ImageMember = tuple[str, int, float, int | None]  # (record_id, hash, rank, confirm hash)


def _member_edges(
    members: Sequence[ImageMember],
    max_hamming: int,
    confirm_max: int | None,
    chunk: int,
    scope: ImageGroup | None = None,
    count: int | None = None,
    reason: str = IMAGE_REASON,
) -> list[Edge]:
    if confirm_max is not None:
        # A pair needs both dHashes to be confirmed: without one a record links to nothing.
        members = [m for m in members if m[3] is not None]
    if len(members) < 2:
        return []
    hashes = np.array([m[1] for m in members], dtype=np.uint64)
    confirm = np.array([m[3] or 0 for m in members], dtype=np.uint64)
    index: dict[str, int] = {}
    records = np.array([index.setdefault(m[0], len(index)) for m in members], dtype=np.int64)
    several = len(index) < len(members)  # some record has several hashes (crop windows)
    a, b = image_forest(
        hashes, confirm, max_hamming, confirm_max, chunk, scope, count, records if several else None
    )
    if several:  # a pair of one record's own hashes joins nothing
        between = records[a] != records[b]
        a, b = a[between], b[between]
    return [
        Edge(members[i][0], members[j][0], reason, members[i][2], members[j][2])
        for i, j in zip(a.tolist(), b.tolist())
    ]


def image_edges_for_group(
    group: ImageGroup,
    members: Sequence[ImageMember],
    max_hamming: int,
    confirm_max: int | None = None,
    chunk: int = 1 << 18,
    reason: str = IMAGE_REASON,
) -> list[Edge]:
    """Edges of one Beam group (`image_group_keys`): a spanning forest of the members' close
    pairs that share a probe key of the group. Every close pair shares a key, so the union over
    groups has exactly the groups of all pairs, with at most members - 1 edges per group."""
    bits = group[1]
    count = (len(members) << bits) // (1 + bits)  # the whole set, for the bucket limit
    return _member_edges(members, max_hamming, confirm_max, chunk, group, count, reason)


def image_edges(attrs: Iterable[NearAttributes], config: NearDedupConfig) -> list[Edge]:
    """Image edges over all records: pairs within `max_hamming` pHash bits (probe keys, see
    above) confirmed on dHash, as a spanning forest (same groups as all pairs), and the crop
    candidates (`crop_edges`)."""
    attrs = list(attrs)
    members = [
        (a.record_id, a.image_hash, a.keep_rank(config.keep), a.confirm_hash)
        for a in attrs
        if a.image_hash is not None
    ]
    image = config.image
    edges = _member_edges(members, image.max_hamming, image.confirm_dhash_max, image.chunk_size)
    return edges + gradient_edges(attrs, config) + crop_edges(attrs, config)


def gradient_members(attrs: NearAttributes, config: NearDedupConfig) -> list[ImageMember]:
    """The record's gradient hash as a member of the gradient-hash search (none when off)."""
    if config.image.gradient_hash_max is None or attrs.gradient_hash is None:
        return []
    return [(attrs.record_id, attrs.gradient_hash, attrs.keep_rank(config.keep), None)]


def gradient_edges(attrs: Iterable[NearAttributes], config: NearDedupConfig) -> list[Edge]:
    """Candidates whose thumbnail gradient hashes are within `gradient_hash_max` bits (pairs
    with an unstable pHash); confirmed like every image pair."""
    limit = config.image.gradient_hash_max
    if limit is None:
        return []
    members = [m for a in attrs for m in gradient_members(a, config)]
    return _member_edges(members, limit, None, config.image.chunk_size)


def crop_edges(attrs: Iterable[NearAttributes], config: NearDedupConfig) -> list[Edge]:
    """Crop candidates: a spanning forest over every record's full and centre-crop pHashes
    (`curate.dedup.crops.crop_members`) within `crop.max_hamming` bits, between records, as
    `CROP_CANDIDATE` edges (proposals the confirmer aligns; see `groups.resolve`)."""
    crop = config.image.crop
    if not crop.enabled:
        return []
    members = [
        m
        for a in attrs
        for m in crop_members(a.record_id, a.image_hash, a.crop_hashes, a.keep_rank(config.keep))
    ]
    edges = _member_edges(
        members, crop.max_hamming, None, config.image.chunk_size, reason=CROP_CANDIDATE
    )
    return [e for e in edges if e.a != e.b]


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
    return _caption_edges(*text_signatures(attrs, config.caption), config)


def _caption_edges(
    chosen: Sequence[NearAttributes], sigs: np.ndarray, config: NearDedupConfig
) -> list[Edge]:
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
    signatures: dict[str, np.ndarray] = {}
    if config.image.enabled:
        edges.extend(image_edges(attrs, config))
    if config.caption.enabled:
        chosen, sigs = text_signatures(attrs, config.caption)
        edges.extend(_caption_edges(chosen, sigs, config))
        signatures = {a.record_id: sig for a, sig in zip(chosen, sigs)}
    edges.extend(extra_edges)
    involved = {e.a for e in edges} | {e.b for e in edges}
    rows = [confirm_row(a, signatures.get(a.record_id)) for a in attrs if a.record_id in involved]
    return resolve(edges, PairConfirmer(rows, config))


def confirm_row(attrs: NearAttributes, signature: np.ndarray | None) -> dict:
    """What `PairConfirmer` reads of one record (the near sidecar's columns)."""
    return {
        "record_id": attrs.record_id,
        "image_hash": attrs.image_hash,
        "confirm_hash": attrs.confirm_hash,
        "thumb": attrs.thumb,
        "signature": signature,
        "cues": attrs.cues,
        "figure_key": attrs.figure_key,
        "pixels": attrs.pixels,
        "crop_hashes": attrs.crop_hashes,
        "crop_thumb": attrs.crop_thumb,
        "aspect": attrs.aspect,
        "gradient_hash": attrs.gradient_hash,
    }


__all__ = [
    "CAPTION_REASON",
    "IMAGE_REASON",
    "NearAttributes",
    "caption_edges",
    "confirm_row",
    "find_near_duplicates",
    "find_near_duplicates_from_attributes",
    "gradient_edges",
    "gradient_members",
    "hamming_matrix",
    "image_edges",
    "near_attributes",
]
