"""Scalable image near-dup (probe keys, spanning forest) finds exactly the groups of all-pairs.

Random 64-bit hashes plus planted clusters of near copies, including pairs exactly at
max_hamming / max_hamming + 1 and flips spread so that no probe block is exact (the hardest case
for the pigeonhole), tight clusters of distinct hashes (the case that used to explode), chains
linked only through a middle hash, and buckets of far-apart hashes sharing a block, compared
with a brute-force reference written here; and the Beam group path equals the in-memory path.
"""

from __future__ import annotations

import tracemalloc
from collections import defaultdict

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup.beam import ImageEdges
from curate.dedup.config import NearDedupConfig
from curate.dedup.confirm import PairConfirmer
from curate.dedup.groups import UnionFind, resolve
from curate.dedup.near import (
    NearAttributes,
    confirm_row,
    find_near_duplicates_from_attributes,
    image_edges,
    image_edges_for_group,
    image_forest,
    image_group_bits,
    image_group_keys,
    image_probe_keys,
    image_probe_layout,
)

_POP16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 by a 16-bit table (independent of the SWAR code under test)."""
    parts = _POP16[np.ascontiguousarray(x).view(np.uint16)].reshape(*x.shape, 4)
    return (parts[..., 0] + parts[..., 1]) + (parts[..., 2] + parts[..., 3])


def brute_force_groups(
    attrs: list[NearAttributes], max_hamming: int, confirm_max: int | None
) -> set[frozenset[str]]:
    """Reference: every pair compared (chunked), components of the pairs that pass both tests."""
    usable = [
        a
        for a in attrs
        if a.image_hash is not None and (confirm_max is None or a.confirm_hash is not None)
    ]
    n = len(usable)
    hashes = np.array([a.image_hash for a in usable], dtype=np.uint64)
    confirm = np.array([a.confirm_hash or 0 for a in usable], dtype=np.uint64)
    rows, cols = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for lo in range(0, n, 512):
        r, c = np.nonzero(_popcount(hashes[lo : lo + 512, None] ^ hashes[None, lo:]) <= max_hamming)
        c += lo
        r, c = r[lo + r < c], c[lo + r < c]
        if confirm_max is not None:
            keep = _popcount(confirm[lo + r] ^ confirm[c]) <= confirm_max
            r, c = r[keep], c[keep]
        rows.append(lo + r)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, set[str]] = defaultdict(set)
    for a, label in zip(usable, labels.tolist()):
        groups[label].add(a.record_id)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


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
            spread: list[int] = []
            for lo, hi in layout:
                take = min(3, hi - lo, budget - len(spread))
                spread.extend(rng.choice(np.arange(lo, hi), size=take, replace=False).tolist())
            copies.append((_flip(base, spread), dbase))
        copies.append((_flip(base, [0]), None))  # no dHash: never linked under confirmation
        for j, (h, c) in enumerate(copies):
            attrs.append(
                NearAttributes(f"c{k:04d}_{j:02d}", h, int(rng.integers(1, 1000)), None, c)
            )
    return attrs


def _config(max_hamming: int, confirm_max: int | None, **image) -> NearDedupConfig:
    return NearDedupConfig.model_validate(
        {
            "caption": {"enabled": False},
            "image": {"max_hamming": max_hamming, "confirm_dhash_max": confirm_max, **image},
        }
    )


def tight_cluster(n: int, seed: int, most_flips: int = 4) -> np.ndarray:
    """n distinct hashes 1..most_flips bits from one random centre (2 * most_flips apart at
    most): blank-ish figures, white-background charts, the slices of one CT series."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, 2**64, dtype=np.uint64, endpoint=False)
    m = 10 * n + 1000
    bits = np.left_shift(np.uint64(1), rng.integers(0, 64, size=(m, most_flips)).astype(np.uint64))
    used = np.arange(most_flips)[None, :] < rng.integers(1, most_flips + 1, size=m)[:, None]
    values = centre ^ np.bitwise_or.reduce(np.where(used, bits, np.uint64(0)), axis=1)
    _, first = np.unique(values, return_index=True)
    assert len(first) >= n
    return values[np.sort(first)[:n]]


def _attrs(hashes: np.ndarray, confirm: np.ndarray | None, prefix: str = "t") -> list:
    confirm_list = confirm.tolist() if confirm is not None else [None] * len(hashes)
    return [
        NearAttributes(f"{prefix}{i:06d}", int(h), 1 + (i * 7919) % 1000, None, c)
        for i, (h, c) in enumerate(zip(hashes.tolist(), confirm_list))
    ]


def _is_forest(edges) -> bool:
    uf = UnionFind()
    return all(uf.union(e.a, e.b) for e in edges)


def test_probe_keys_pigeonhole_on_spread_flips():
    # 8 bits spread 3/3/2 over the three 21/21/22-bit probe blocks: only the 2-bit block's
    # midpoints are shared keys; 9 bits spread 3/3/3 share none.
    layout = image_probe_layout(8)
    assert layout == ((0, 21), (21, 42), (42, 64))
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
        (8, 6, 10_000, 300),
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

    def close(a: str, b: str) -> bool:
        x, y = by_id[a], by_id[b]
        assert x.image_hash is not None and y.image_hash is not None
        return (x.image_hash ^ y.image_hash).bit_count() <= 8 and (
            (x.confirm_hash or 0) ^ (y.confirm_hash or 0)
        ).bit_count() <= 6

    # Reference: each group of all close pairs keeps its best record and drops only the
    # members close to it, then repeats on the rest (no member joins through a third record).
    expected = []
    for group in brute_force_groups(attrs, 8, 6):
        remaining = sorted(group, key=lambda rid: (-rank[rid], rid))
        while remaining:
            keep, rest = remaining[0], remaining[1:]
            expected += [(rid, "near_duplicate_image", keep) for rid in rest if close(keep, rid)]
            remaining = [rid for rid in rest if not close(keep, rid)]
    assert [d.as_tuple() for d in got] == sorted(expected)
    rows = [confirm_row(a, None) for a in attrs]
    assert resolve(image_edges(attrs, config), PairConfirmer(rows, config)) == got


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


def _dhash_for(mode: str, n: int, seed: int) -> np.ndarray | None:
    """dHashes for a pHash-tight cluster: 'random' (white-background charts: pHash agrees,
    dHash does not), 'tight' (one CT series: both agree), 'five' (five dHash neighbourhoods),
    'off' (no confirmation)."""
    rng = np.random.default_rng(seed + 1)
    if mode == "random":
        return rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    if mode == "tight":
        return tight_cluster(n, seed + 2, most_flips=3)
    if mode == "five":
        parts = [tight_cluster(n // 5 + 1, seed + 10 + k, most_flips=3) for k in range(5)]
        return np.concatenate(parts)[rng.permutation(5 * (n // 5 + 1))[:n]]
    return None


@pytest.mark.parametrize(
    ("mode", "expected_sizes"),
    [("off", [3000]), ("random", []), ("tight", [3000]), ("five", [599, 600, 600, 600, 601])],
)
def test_tight_cluster_matches_all_pairs(mode, expected_sizes):
    # 3,000 distinct hashes 1-4 bits from one centre: every pair within 8 pHash bits, so the
    # dHash confirmation alone decides; this used to take 44 s and 1.8 GB.
    hashes = tight_cluster(3000, seed=11)
    confirm = _dhash_for(mode, 3000, seed=11)
    attrs = _attrs(hashes, confirm)
    confirm_max = None if mode == "off" else 6
    edges = image_edges(attrs, _config(8, confirm_max))
    expected = brute_force_groups(attrs, 8, confirm_max)
    assert edge_groups(edges) == expected
    assert sorted(len(g) for g in expected) == expected_sizes
    assert _is_forest(edges) and len(edges) == sum(len(g) - 1 for g in expected)


def test_chains_link_through_a_middle_hash():
    # a-b and b-c within 8 bits, a-c 12 bits apart: one group only through b. A chain whose
    # middle has a far dHash breaks into its ends; one without a middle stays apart.
    rng = np.random.default_rng(21)
    background = rng.integers(0, 2**64, size=(5000, 2), dtype=np.uint64, endpoint=False)
    attrs = _attrs(background[:, 0], background[:, 1], prefix="r")
    chains = []
    for k in range(40):
        a, d = (int(v) for v in rng.integers(0, 2**64, size=2, dtype=np.uint64, endpoint=False))
        bits = rng.choice(64, size=12, replace=False)
        b, c = _flip(a, bits[:6]), _flip(a, bits)  # a-b 6, b-c 6, a-c 12
        middle_d = d if k % 4 else _flip(d, range(0, 64, 4))  # every 4th: dHash 16 bits off
        members = [(a, d), (b, middle_d), (c, _flip(d, [1]))]
        if k % 10 == 9:
            members = [members[0], members[2]]  # no middle: a and c never meet
        for j, (h, dh) in enumerate(members):
            attrs.append(NearAttributes(f"chain{k:02d}_{j}", h, 10 + j, None, dh))
        chains.append(k)
    got = edge_groups(image_edges(attrs, _config(8, 6)))
    assert got == brute_force_groups(attrs, 8, 6)
    linked = {k for k in chains if k % 4 and k % 10 != 9}
    assert got == {frozenset(f"chain{k:02d}_{j}" for j in range(3)) for k in linked}
    decisions = {
        d.record_id: d.duplicate_of
        for d in find_near_duplicates_from_attributes(attrs, _config(8, 6))
    }
    # the ends are 12 bits apart: the middle is a copy of the kept end, the far end is not
    assert decisions["chain01_1"] == "chain01_2" and "chain01_0" not in decisions


@pytest.mark.parametrize("shared", ["pHash block 0", "pHash block 2", "dHash block 0"])
def test_far_apart_hashes_sharing_a_block_match_all_pairs(shared):
    # Thousands of hashes equal on one 21-bit block but random elsewhere: their buckets are
    # large yet sparse, and are split by keys on the other bits rather than compared pairwise.
    rng = np.random.default_rng(31)
    n = 2500
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    confirm = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    block0, block2 = np.uint64((1 << 21) - 1), np.uint64(((1 << 22) - 1) << 42)
    if shared == "pHash block 0":
        hashes = (hashes & ~block0) | np.uint64(0x1234)
    elif shared == "pHash block 2":
        hashes = (hashes & ~block2) | (np.uint64(0x2345) << np.uint64(42))
    else:
        hashes = tight_cluster(n, seed=31)
        confirm = (confirm & ~block0) | np.uint64(0x3456)
    # a few near copies inside the shared block so that groups exist
    copies = hashes[:200] ^ np.left_shift(
        np.uint64(1), rng.integers(21, 42, size=200).astype(np.uint64)
    )
    attrs = _attrs(np.r_[hashes, copies], np.r_[confirm, confirm[:200]])
    confirm_max = 6 if shared.startswith("dHash") else None
    edges = image_edges(attrs, _config(8, confirm_max))
    expected = brute_force_groups(attrs, 8, confirm_max)
    assert edge_groups(edges) == expected
    assert len(expected) >= 190 and _is_forest(edges)


@pytest.mark.parametrize("bits", [0, 3])
def test_group_path_matches_all_pairs(bits):
    # What curate.dedup.beam.ImageEdges does: a member goes to its groups (block, top key bits),
    # each group call yields a spanning forest of its pairs; the union is the all-pairs groups.
    attrs = planted_attrs(2000, 60, 8, 6, seed=5)
    attrs += _attrs(tight_cluster(400, seed=5), _dhash_for("five", 400, seed=5), prefix="t")
    groups: dict[tuple[int, int, int], list] = defaultdict(list)
    for a in attrs:
        for key in image_group_keys(a.image_hash, 8, bits):
            groups[key].append((a.record_id, a.image_hash, float(a.pixels), a.confirm_hash))
    assert all(len(image_group_keys(a.image_hash, 8, bits)) == 3 * (1 + bits) for a in attrs[:5])
    assert len(groups) <= 3 << bits
    edges = []
    for key, members in groups.items():
        forest = image_edges_for_group(key, members, 8, 6, chunk=1024)
        assert _is_forest(forest) and len(forest) < len(members)
        edges += forest
    assert edge_groups(edges) == brute_force_groups(attrs, 8, 6)


def test_group_bits_follow_the_count():
    assert image_group_bits(1190, 8, 100_000) == 0  # the demo cohort: one call per block
    assert image_group_bits(25_000_000, 8, 100_000) == 12  # 13 * 25M / 4096 ~ 79k a group
    assert image_group_bits(10**12, 8, 1) == 21  # never past a block: then groups are keys


def test_small_chunks_give_the_same_groups():
    attrs = planted_attrs(3000, 60, 8, 6, seed=9)
    expected = brute_force_groups(attrs, 8, 6)
    for chunk in (1024, 1 << 14):
        assert edge_groups(image_edges(attrs, _config(8, 6, chunk_size=chunk))) == expected


def test_beam_image_edges_equal_in_memory():
    attrs = planted_attrs(1500, 40, 8, 6, seed=13)
    attrs += _attrs(tight_cluster(300, seed=13), _dhash_for("tight", 300, seed=13), prefix="t")
    config = _config(8, 6, beam_group_size=300)  # several top bits: neighbour groups are used
    expected = [d.as_tuple() for d in find_near_duplicates_from_attributes(attrs, config)]
    assert len(expected) > 300
    confirmer = PairConfirmer([confirm_row(a, None) for a in attrs], config)
    with beam.Pipeline() as pipeline:
        edges = pipeline | beam.Create(attrs) | ImageEdges(config)
        decisions = (
            edges
            | beam.combiners.ToList()
            | beam.FlatMap(lambda es: [d.as_tuple() for d in resolve(es, confirmer)])
        )
        assert_that(decisions, equal_to(expected))


@pytest.mark.parametrize("mode", ["off", "random", "tight"])
def test_tight_cluster_of_20000_stays_small(mode):
    hashes = tight_cluster(20_000, seed=41)
    confirm = _dhash_for(mode, 20_000, seed=41)
    confirm_max = None if mode == "off" else 6
    tracemalloc.start()
    try:
        first, second = image_forest(hashes, confirm, 8, confirm_max, chunk=1 << 18)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # was 1.8 GB at 3,000 hashes; MemoryError at 8,000
    assert len(first) == (0 if mode == "random" else 19_999)  # a spanning tree, or nothing
