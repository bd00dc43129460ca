"""Scalable image candidate generation (probe keys) finds exactly the groups of all-pairs.

Random 64-bit hashes plus planted clusters of near copies, including pairs exactly at
max_hamming / max_hamming + 1 and flips spread so that no probe block is exact (the hardest case
for the pigeonhole), compared with a brute-force reference written here.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from curate.dedup.config import NearDedupConfig
from curate.dedup.groups import UnionFind, resolve
from curate.dedup.near import (
    NearAttributes,
    find_near_duplicates_from_attributes,
    image_edges,
    image_edges_for_key,
    image_edges_in_bucket,
    image_first_shared_key,
    image_probe_keys,
    image_probe_layout,
)

_POP16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    return _POP16[x.view(np.uint16)].reshape(*x.shape, 4).sum(axis=-1, dtype=np.int32)


def brute_force_groups(
    attrs: list[NearAttributes], max_hamming: int, confirm_max: int | None
) -> set[frozenset[str]]:
    """Reference: every pair compared (chunked), components of the pairs that pass both tests."""
    usable = [
        a
        for a in attrs
        if a.image_hash is not None and (confirm_max is None or a.confirm_hash is not None)
    ]
    hashes = np.array([a.image_hash for a in usable], dtype=np.uint64)
    confirm = np.array([a.confirm_hash or 0 for a in usable], dtype=np.uint64)
    uf = UnionFind()
    for lo in range(0, len(usable), 1024):
        d = _popcount(hashes[lo : lo + 1024, None] ^ hashes[None, :])
        ok = d <= max_hamming
        if confirm_max is not None:
            ok &= _popcount(confirm[lo : lo + 1024, None] ^ confirm[None, :]) <= confirm_max
        for r, c in zip(*np.nonzero(ok)):
            if lo + r < c:
                uf.union(usable[lo + r].record_id, usable[c].record_id)
    return _components(uf)


def _components(uf: UnionFind) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for rid in list(uf.parent):
        groups[uf.find(rid)].add(rid)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def edge_groups(edges) -> set[frozenset[str]]:
    uf = UnionFind()
    for e in edges:
        uf.union(e.a, e.b)
    return _components(uf)


def _flip(value: int, bits) -> int:
    for b in bits:
        value ^= 1 << int(b)
    return value


def planted_attrs(
    n_random: int, n_clusters: int, max_hamming: int, confirm_max: int, seed: int
) -> list[NearAttributes]:
    rng = np.random.default_rng(seed)
    rand = rng.integers(0, 2**63, size=(n_random, 2), dtype=np.uint64) * np.uint64(2)
    rand ^= rng.integers(0, 2, size=(n_random, 2), dtype=np.uint64)  # full 64 bits
    attrs = [
        NearAttributes(f"r{i:06d}", int(h), int(rng.integers(1, 1000)), None, int(c))
        for i, (h, c) in enumerate(rand.tolist())
    ]
    layout = image_probe_layout(max_hamming)
    for k in range(n_clusters):
        base = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
        dbase = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
        copies: list[tuple[int, int | None]] = [(base, dbase)]
        for flips in (0, 1, 2, max_hamming - 1, max_hamming, max_hamming, max_hamming + 1):
            bits = rng.choice(64, size=max(flips, 0), replace=False)
            dflips = int(rng.integers(0, confirm_max + 3))  # some beyond the dHash limit
            dbits = rng.choice(64, size=dflips, replace=False)
            copies.append((_flip(base, bits), _flip(dbase, dbits)))
        # Hardest case: max_hamming bits spread so that every probe block differs by >= 2
        # (the only shared keys are the midpoints of one block) and one more bit (unlinked).
        for extra in (0, 1):
            budget = max_hamming + extra
            bits: list[int] = []
            for lo, hi in layout:
                take = min(3, hi - lo, budget - len(bits))
                bits.extend(rng.choice(np.arange(lo, hi), size=take, replace=False).tolist())
            copies.append((_flip(base, bits), dbase))
        copies.append((_flip(base, [0]), None))  # no dHash: never linked under confirmation
        for j, (h, c) in enumerate(copies):
            attrs.append(
                NearAttributes(f"c{k:04d}_{j:02d}", h, int(rng.integers(1, 1000)), None, c)
            )
    return attrs


def _config(max_hamming: int, confirm_max: int | None) -> NearDedupConfig:
    return NearDedupConfig.model_validate(
        {
            "caption": {"enabled": False},
            "image": {"max_hamming": max_hamming, "confirm_dhash_max": confirm_max},
        }
    )


def test_probe_keys_pigeonhole_on_spread_flips():
    # 8 bits spread 3/3/2 over the three 21/21/22-bit probe blocks: only the 2-bit block's
    # midpoints are shared keys; 9 bits spread 3/3/3 share none.
    layout = image_probe_layout(8)
    assert layout == [(0, 21), (21, 42), (42, 64)]
    a = 0x0123456789ABCDEF
    b = _flip(a, [0, 5, 9, 21, 30, 40, 50, 60])
    c = _flip(a, [0, 5, 9, 21, 30, 40, 50, 55, 60])
    shared = set(image_probe_keys(a, 8)) & set(image_probe_keys(b, 8))
    block2 = (a >> 42) & ((1 << 22) - 1)
    assert shared == {(2, block2 ^ (1 << 8)), (2, block2 ^ (1 << 18))}
    assert not set(image_probe_keys(a, 8)) & set(image_probe_keys(c, 8))
    assert len(image_probe_keys(a, 8)) == 3 + 64


@pytest.mark.parametrize(
    ("max_hamming", "confirm_max", "n_random", "n_clusters"),
    [
        (8, 6, 20_000, 300),
        (8, None, 5_000, 100),
        (0, 2, 3_000, 50),
        (4, 3, 3_000, 50),
        (13, 6, 3_000, 50),
    ],
)
def test_image_edges_match_all_pairs(max_hamming, confirm_max, n_random, n_clusters):
    attrs = planted_attrs(n_random, n_clusters, max_hamming, confirm_max or 6, seed=max_hamming)
    config = _config(max_hamming, confirm_max)
    expected = brute_force_groups(attrs, max_hamming, confirm_max)
    got = edge_groups(image_edges(attrs, config))
    assert got == expected
    # The planted clusters really exercise the thresholds: linked and unlinked copies exist.
    assert sum(len(g) for g in expected) > n_clusters
    assert any(not any(f"c0000_{j:02d}" in g for g in expected) for j in range(1, 12))


def test_decisions_equal_resolve_of_reference_edges():
    attrs = planted_attrs(4_000, 80, 8, 6, seed=3)
    config = _config(8, 6)
    got = find_near_duplicates_from_attributes(attrs, config)
    by_id = {a.record_id: a for a in attrs}
    rank = {rid: by_id[rid].pixels for rid in by_id}
    expected = []
    for group in brute_force_groups(attrs, 8, 6):
        keep = min(group, key=lambda rid: (-rank[rid], rid))
        expected += [(rid, "near_duplicate_image", keep) for rid in group if rid != keep]
    assert [d.as_tuple() for d in got] == sorted(expected)
    assert resolve(image_edges(attrs, config)) == got


def test_beam_bucket_path_matches_all_pairs():
    # What curate.dedup.beam.NearDuplicates does: group by probe keys, edges per bucket.
    attrs = planted_attrs(2_000, 60, 8, 6, seed=5)
    buckets: dict[tuple[int, int], list] = defaultdict(list)
    for a in attrs:
        for key in image_probe_keys(a.image_hash, 8):
            buckets[key].append((a.record_id, a.image_hash, float(a.pixels), a.confirm_hash))
    expected = brute_force_groups(attrs, 8, 6)
    owned = [e for key in buckets for e in image_edges_for_key(key, buckets[key], 8, 6)]
    assert edge_groups(owned) == expected
    pairs = [frozenset((e.a, e.b)) for e in owned]
    assert len(pairs) == len(set(pairs))  # each close pair's edge comes from one bucket only
    every = [e for key in buckets for e in image_edges_in_bucket(buckets[key], 8, 6)]
    assert edge_groups(every) == expected
    assert len(every) > len(owned)


def test_first_shared_key_is_the_smallest_shared_probe_key():
    rng = np.random.default_rng(7)
    for max_hamming in (0, 4, 8, 13):
        ha, hb, want = [], [], []
        for _ in range(300):
            a = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
            if rng.integers(0, 4) == 0:
                a &= 0xFFFF  # many zero bits: a block value of 0 has no set bit to clear
            b = _flip(a, rng.choice(64, size=int(rng.integers(0, 12)), replace=False))
            shared = set(image_probe_keys(a, max_hamming)) & set(image_probe_keys(b, max_hamming))
            ha.append(a)
            hb.append(b)
            want.append(min(shared) if shared else (-1, 0))
        index, value = image_first_shared_key(
            np.array(ha, dtype=np.uint64), np.array(hb, dtype=np.uint64), max_hamming
        )
        assert list(zip(index.tolist(), value.tolist())) == want


def test_identical_hashes_collapse_without_losing_confirmation():
    # 500 identical pHashes: one dHash class of 300, another of 200 far away, one without dHash.
    h, d1, d2 = 0xDEADBEEF12345678, 0x0F0F0F0F0F0F0F0F, 0xF0F0F0F0F0F0F0F0
    attrs = [NearAttributes(f"a{i:03d}", h, 1, None, d1) for i in range(300)]
    attrs += [NearAttributes(f"b{i:03d}", h, 1, None, d2) for i in range(200)]
    attrs.append(NearAttributes("z", h, 1, None, None))
    groups = edge_groups(image_edges(attrs, _config(8, 6)))
    assert groups == {
        frozenset(a.record_id for a in attrs[:300]),
        frozenset(a.record_id for a in attrs[300:500]),
    }
    assert len(image_edges(attrs, _config(8, None))) == 500  # one group of 501: a spanning tree
