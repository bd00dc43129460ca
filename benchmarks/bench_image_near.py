"""Image near-dedup candidate generation: old exact-block pigeonhole vs probe keys.

Baseline (`old_image_edges`, copied verbatim from curate.dedup.near before the change): bucket on
max_hamming + 1 = 9 exact blocks of ~7 bits, brute force inside each bucket (~N/128 hashes).
New (`curate.dedup.near.image_edges`): 3 blocks of ~21 bits keyed by value and its one-bit flips,
sort-joined in numpy. Same random data (plus planted near-copy clusters) for both; prints times,
the ratio and whether the duplicate groups are identical.

    .venv/bin/python benchmarks/bench_image_near.py [--sizes 50000 200000] [--new-only 1000000]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from curate.dedup.config import NearDedupConfig
from curate.dedup.groups import Edge, UnionFind, resolve
from curate.dedup.imagehash import hamming_to, hash_blocks
from curate.dedup.near import IMAGE_REASON, NearAttributes, image_edges

# ---- baseline: the former implementation ------------------------------------------------------


def old_image_edges_in_bucket(members, max_hamming, confirm_max=None, reason=IMAGE_REASON):
    if len(members) < 2:
        return []
    members = sorted(members, key=lambda m: m[0])
    ids = [m[0] for m in members]
    hashes = np.array([m[1] for m in members], dtype=np.uint64)
    ranks = [m[2] for m in members]
    confirm = [m[3] for m in members]
    edges = []
    uf = UnionFind()
    chunk = 512
    for lo in range(0, len(ids), chunk):
        block = hashes[lo : lo + chunk]
        dist = hamming_to(block, hashes)
        rows, cols = np.nonzero(dist <= max_hamming)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = lo + r
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


def old_image_edges(attrs, config):
    buckets = defaultdict(list)
    for a in attrs:
        if a.image_hash is None:
            continue
        for key in hash_blocks(a.image_hash, config.image.max_hamming + 1):
            buckets[key].append(
                (a.record_id, a.image_hash, a.keep_rank(config.keep), a.confirm_hash)
            )
    edges = []
    for key in sorted(buckets):
        edges.extend(
            old_image_edges_in_bucket(
                buckets[key], config.image.max_hamming, config.image.confirm_dhash_max
            )
        )
    return edges


# ---- data and comparison ------------------------------------------------------------------


def make_attrs(n: int, seed: int = 0) -> list[NearAttributes]:
    """n hashes: 90% random, 10% in clusters of 10 copies with 0..9 flipped pHash bits."""
    rng = np.random.default_rng(seed)
    n_clusters = n // 100
    n_random = n - 10 * n_clusters
    ph = rng.integers(0, 2**64, size=n_random + n_clusters, dtype=np.uint64, endpoint=False)
    dh = rng.integers(0, 2**64, size=n_random + n_clusters, dtype=np.uint64, endpoint=False)
    hashes, confirm = ph[:n_random].tolist(), dh[:n_random].tolist()
    for base, dbase in zip(ph[n_random:].tolist(), dh[n_random:].tolist()):
        for flips in range(10):
            h, d = base, dbase
            for bit in rng.choice(64, size=flips, replace=False).tolist():
                h ^= 1 << bit
            for bit in rng.choice(64, size=int(rng.integers(0, 8)), replace=False).tolist():
                d ^= 1 << bit
            hashes.append(h)
            confirm.append(d)
    pixels = rng.integers(1, 10**6, size=n).tolist()
    return [
        NearAttributes(f"rec{i:08d}", h, p, None, d)
        for i, (h, d, p) in enumerate(zip(hashes, confirm, pixels))
    ]


def groups(edges) -> set[frozenset[str]]:
    uf = UnionFind()
    for e in edges:
        uf.union(e.a, e.b)
    out = defaultdict(set)
    for rid in list(uf.parent):
        out[uf.find(rid)].add(rid)
    return {frozenset(g) for g in out.values()}


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[50_000, 200_000])
    parser.add_argument("--new-only", type=int, nargs="*", default=[1_000_000])
    args = parser.parse_args()
    config = NearDedupConfig.model_validate({"caption": {"enabled": False}})
    print(
        f"max_hamming={config.image.max_hamming} confirm_dhash_max={config.image.confirm_dhash_max}"
    )
    for n in args.sizes:
        attrs = make_attrs(n)
        old, t_old = timed(old_image_edges, attrs, config)
        new, t_new = timed(image_edges, attrs, config)
        same = groups(old) == groups(new) and resolve(old) == resolve(new)
        print(
            f"N={n:>9,}  old {t_old:8.2f}s  new {t_new:6.2f}s  speedup x{t_old / t_new:6.1f}  "
            f"groups {len(groups(new))}  identical groups+decisions={same}"
        )
        if not same:
            raise SystemExit("results differ")
    for n in args.new_only:
        attrs = make_attrs(n)
        new, t_new = timed(image_edges, attrs, config)
        print(f"N={n:>9,}  new {t_new:6.2f}s (old not run: quadratic)  groups {len(groups(new))}")


if __name__ == "__main__":
    main()
