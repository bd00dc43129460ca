"""Image near-dup on hard data: a tight cluster of distinct hashes vs uniform hashes, per hash.

The former code listed every candidate pair of a bucket and fell back to a pair sort-join over
buckets above 2,048 members: a tight cluster of distinct but similar hashes (blank-ish figures,
white-background charts, one CT series) took 44 s / 1.8 GB at 3,000 hashes and hit MemoryError
at 8,000. `curate.dedup.near.image_edges` now links a spanning forest with memory bounded by
`chunk_size`. In one run this prints, each case in a child process of its own:

- time (wall and CPU, best of 3) and time per hash of `image_edges` on NearAttributes, for a
  tight cluster of 20,000 distinct pHashes 1-4 bits from one centre (three dHash variants:
  unrelated charts, one CT series, no confirmation) and for 1,000,000 uniform hashes with
  planted near-copy clusters; peak memory (tracemalloc, during the call) and the process's max
  RSS (data included);
- the ratio (tight per-hash CPU time) / (uniform per-hash CPU time), which must be <= 3
  (CPU time: other processes share the cores; wall is printed too), and memory < 1 GB;
- same groups and decisions as an exhaustive all-pairs search (chunked, scipy components) on
  the tight clusters at 3,000 and on 20,000 uniform + planted hashes;
- Beam calls for 1,190 hashes (the demo cohort's figures): one per probe key before, one per
  group of buckets now, and that the Beam decisions equal the in-memory ones.

Exits non-zero when a bound fails.

    .venv/bin/python benchmarks/bench_image_near.py [--uniform 1000000] [--tight 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup.config import NearDedupConfig
from curate.dedup.confirm import PairConfirmer
from curate.dedup.groups import Duplicate, UnionFind, resolve
from curate.dedup.near import (
    NearAttributes,
    confirm_row,
    find_near_duplicates_from_attributes,
    image_edges,
    image_group_bits,
    image_group_keys,
    image_probe_keys,
)

MAX_RATIO = 3.0
REPEATS = 3
MAX_MB = 1024.0  # peak memory, traced and max RSS
TIGHT_MODES = {
    "charts": "pHash tight, dHash unrelated (white-background charts): no group",
    "series": "pHash tight, dHash tight (one CT series): one group",
    "nodhash": "pHash tight, no dHash confirmation: one group",
}

# ---- data ----------------------------------------------------------------------------------


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)


def flip_bits(values: np.ndarray, rng: np.random.Generator, most: int, least: int = 0):
    """Each value with `least`..`most` random bits set to their complement (OR of random bit
    masks: repeated positions count once, so some flip fewer)."""
    n = len(values)
    masks = np.left_shift(np.uint64(1), rng.integers(0, 64, size=(n, most)).astype(np.uint64))
    used = np.arange(most)[None, :] < rng.integers(least, most + 1, size=n)[:, None]
    return values ^ np.bitwise_or.reduce(np.where(used, masks, np.uint64(0)), axis=1)


def tight_cluster(n: int, seed: int, most_flips: int = 4) -> np.ndarray:
    """n distinct hashes 1..most_flips bits from one random centre."""
    rng = np.random.default_rng(seed)
    centre = random_hashes(rng, 1)
    values = flip_bits(np.repeat(centre, 10 * n + 1000), rng, most_flips, least=1)
    _, first = np.unique(values, return_index=True)
    if len(first) < n:
        raise SystemExit(f"cannot draw {n} distinct hashes within {most_flips} bits")
    return values[np.sort(first)[:n]]


def tight_set(n: int, mode: str, seed: int = 7) -> tuple[np.ndarray, np.ndarray | None]:
    hashes = tight_cluster(n, seed)
    if mode == "charts":
        return hashes, random_hashes(np.random.default_rng(seed + 1), n)
    if mode == "series":
        return hashes, tight_cluster(n, seed + 2, most_flips=3)  # pairwise <= 6: confirmed
    return hashes, None


def uniform_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n hashes: 99% uniform, 1% in clusters of 10 near copies (0-9 pHash bits, 0-7 dHash)."""
    rng = np.random.default_rng(seed)
    hashes, confirm = random_hashes(rng, n), random_hashes(rng, n)
    planted = n // 1000 * 10
    if planted:
        hashes[-planted:] = flip_bits(np.repeat(hashes[: planted // 10], 10), rng, 9)
        confirm[-planted:] = flip_bits(np.repeat(confirm[: planted // 10], 10), rng, 7)
    return hashes, confirm


def as_attrs(hashes: np.ndarray, confirm: np.ndarray | None) -> list[NearAttributes]:
    dhashes = confirm.tolist() if confirm is not None else [None] * len(hashes)
    pixels = (np.arange(len(hashes)) * 7919 % 100_003 + 1).tolist()
    return [
        NearAttributes(f"rec{i:08d}", h, p, None, d)
        for i, (h, d, p) in enumerate(zip(hashes.tolist(), dhashes, pixels))
    ]


def config_for(mode: str) -> NearDedupConfig:
    image = {"confirm_dhash_max": None} if mode == "nodhash" else {}
    return NearDedupConfig.model_validate({"caption": {"enabled": False}, "image": image})


# ---- exhaustive reference --------------------------------------------------------------------

_POP16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    parts = _POP16[np.ascontiguousarray(x).view(np.uint16)].reshape(*x.shape, 4)
    return (parts[..., 0] + parts[..., 1]) + (parts[..., 2] + parts[..., 3])


def exhaustive_groups(attrs: list[NearAttributes], config: NearDedupConfig) -> set[frozenset]:
    """Every pair compared (rows in chunks), components of the pairs within both thresholds."""
    max_h, confirm_max = config.image.max_hamming, config.image.confirm_dhash_max
    usable = [a for a in attrs if confirm_max is None or a.confirm_hash is not None]
    hashes = np.array([a.image_hash for a in usable], dtype=np.uint64)
    confirm = np.array([a.confirm_hash or 0 for a in usable], dtype=np.uint64)
    n, rows, cols = len(usable), [], []
    for lo in range(0, n, 256):
        r, c = np.nonzero(_popcount(hashes[lo : lo + 256, None] ^ hashes[None, lo:]) <= max_h)
        r, c = r + lo, c + lo
        r, c = r[r < c], c[r < c]
        if confirm_max is not None:
            keep = _popcount(confirm[r] ^ confirm[c]) <= confirm_max
            r, c = r[keep], c[keep]
        rows.append(r)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, set[str]] = defaultdict(set)
    for a, label in zip(usable, labels.tolist()):
        members[label].add(a.record_id)
    return {frozenset(g) for g in members.values() if len(g) > 1}


def expected_decisions(attrs: list[NearAttributes], groups: set[frozenset]) -> list[Duplicate]:
    rank = {a.record_id: a.pixels for a in attrs}
    out = []
    for group in groups:
        keep = min(group, key=lambda rid: (-rank[rid], rid))
        out += [Duplicate(rid, "near_duplicate_image", keep) for rid in group if rid != keep]
    return sorted(out)


def edge_groups(edges) -> set[frozenset]:
    uf = UnionFind()
    for e in edges:
        uf.union(e.a, e.b)
    members: dict[str, set[str]] = defaultdict(set)
    for rid in list(uf.parent):
        members[uf.find(rid)].add(rid)
    return {frozenset(g) for g in members.values() if len(g) > 1}


# ---- one case in a child process -------------------------------------------------------------


def run_case(kind: str, n: int, mode: str) -> dict:
    """Time `image_edges` and take the max RSS (data included) without a tracer, then measure
    the call's own peak with tracemalloc in a second call."""
    hashes, confirm = tight_set(n, mode) if kind == "tight" else uniform_set(n)
    attrs = as_attrs(hashes, confirm)
    config = config_for(mode)
    wall, cpu = float("inf"), float("inf")
    for _ in range(REPEATS):  # the best of a few: other processes share the cores
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        edges = image_edges(attrs, config)
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
        del edges
    # Resolving: components only (the former step) vs each drop confirmed against its kept
    # record (the rows of the records in an edge; no thumbnails here, so hashes confirm).
    edges = image_edges(attrs, config)
    start = time.process_time()
    resolve(edges)
    components_cpu = time.process_time() - start
    start = time.process_time()
    involved = {e.a for e in edges} | {e.b for e in edges}
    rows = [confirm_row(a, None) for a in attrs if a.record_id in involved]
    resolve(edges, PairConfirmer(rows, config))
    confirmed_cpu = time.process_time() - start
    del edges
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the tracer's own
    tracemalloc.start()
    edges = image_edges(attrs, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak / 2**20,
        "rss_mb": rss,
        "edges": len(edges),
        "groups": len(edge_groups(edges)),
        "resolve_components_cpu": components_cpu,
        "resolve_confirmed_cpu": confirmed_cpu,
    }


def in_child(kind: str, n: int, mode: str) -> dict:
    command = [sys.executable, __file__, "--child", kind, str(n), mode]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"case {kind} {n} {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the report --------------------------------------------------------------------------------


def report_scale(uniform_n: int, tight_n: int) -> list[str]:
    failures = []
    chunk = config_for("").image.chunk_size
    print(f"== time and memory (child process per case, best of {REPEATS}; chunk_size={chunk})")
    uniform = in_child("uniform", uniform_n, "charts")
    base = uniform["cpu"] / uniform_n
    print(
        f"uniform {uniform_n:>9,} + planted: wall {uniform['wall']:6.2f}s cpu {uniform['cpu']:6.2f}s"
        f"  {base * 1e6:5.2f} us/hash  peak {uniform['peak_mb']:6.0f} MB  max RSS"
        f" {uniform['rss_mb']:6.0f} MB  groups {uniform['groups']}"
    )
    _report_resolve("uniform", uniform)
    if max(uniform["rss_mb"], uniform["peak_mb"]) >= MAX_MB:
        failures.append(f"uniform memory {uniform['rss_mb']:.0f} MB >= {MAX_MB:.0f}")
    for mode, what in TIGHT_MODES.items():
        tight = in_child("tight", tight_n, mode)
        per_hash = tight["cpu"] / tight_n
        ratio = per_hash / base
        ok = ratio <= MAX_RATIO and max(tight["rss_mb"], tight["peak_mb"]) < MAX_MB
        print(
            f"tight   {tight_n:>9,} {mode:8s}: wall {tight['wall']:6.2f}s cpu {tight['cpu']:6.2f}s"
            f"  {per_hash * 1e6:5.2f} us/hash  peak {tight['peak_mb']:6.0f} MB  max RSS"
            f" {tight['rss_mb']:6.0f} MB  groups {tight['groups']}  edges {tight['edges']}"
            f"  ratio to uniform x{ratio:4.2f} (<= {MAX_RATIO}) {'ok' if ok else 'FAIL'}  [{what}]"
        )
        _report_resolve(f"tight {mode}", tight)
        if not ok:
            failures.append(f"tight {mode}: ratio {ratio:.2f}, memory {tight['rss_mb']:.0f} MB")
    return failures


def _report_resolve(label: str, case: dict) -> None:
    """The confirmation step's cost beside the former components-only resolve, and beside the
    edge search itself (the figure that bounds the near-dup step)."""
    base, confirmed = case["resolve_components_cpu"], case["resolve_confirmed_cpu"]
    print(
        f"    {label}: resolve cpu {base:5.2f}s components-only (baseline) vs {confirmed:5.2f}s"
        f" confirmed (x{confirmed / max(base, 1e-9):4.2f}); edges+confirmed resolve"
        f" x{(case['cpu'] + confirmed) / max(case['cpu'] + base, 1e-9):4.2f} of edges+baseline"
    )


def check_exact(attrs: list[NearAttributes], config: NearDedupConfig, label: str) -> bool:
    start = time.perf_counter()
    expected = exhaustive_groups(attrs, config)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    edges = image_edges(attrs, config)
    t_new = time.perf_counter() - start
    same = edge_groups(edges) == expected and resolve(edges) == expected_decisions(attrs, expected)
    sizes = sorted((len(g) for g in expected), reverse=True)
    print(
        f"{label:34s} exhaustive {t_ref:6.2f}s  image_edges {t_new:5.2f}s  groups {len(expected)}"
        f" (largest {sizes[:3]})  same groups and decisions: {same}"
    )
    return same


def report_exact(tight_n: int, uniform_n: int) -> list[str]:
    print("== same groups as an exhaustive all-pairs search")
    failures = []
    for mode in TIGHT_MODES:
        attrs = as_attrs(*tight_set(tight_n, mode, seed=3))
        if not check_exact(attrs, config_for(mode), f"tight {tight_n:,} {mode}"):
            failures.append(f"tight {tight_n} {mode}: groups differ")
    attrs = as_attrs(*uniform_set(uniform_n, seed=5))
    if not check_exact(attrs, config_for("charts"), f"uniform {uniform_n:,} + planted"):
        failures.append(f"uniform {uniform_n}: groups differ")
    return failures


def report_beam(n: int) -> list[str]:
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from curate.dedup.beam import ImageEdges

    print(f"== Beam calls for {n:,} hashes (the demo cohort's figure count)")
    hashes, confirm = uniform_set(n, seed=9)
    attrs = as_attrs(hashes, confirm)
    config = config_for("charts")
    max_h, group_size = config.image.max_hamming, config.image.beam_group_size
    probe_keys = {k for h in hashes.tolist() for k in image_probe_keys(h, max_h)}
    bits = image_group_bits(n, max_h, group_size)
    groups = {g for h in hashes.tolist() for g in image_group_keys(h, max_h, bits)}
    print(
        f"probe-key buckets (one call each before): {len(probe_keys):,}   bucket groups (one"
        f" call each now, {bits} top bits): {len(groups)}"
    )
    for big in (1_000_000, 25_000_000):
        b = image_group_bits(big, max_h, group_size)
        print(f"  at {big:>10,} hashes: {b} top bits, {3 << b:,} groups, {3 * (1 + b)} per hash")
    expected = [d.as_tuple() for d in find_near_duplicates_from_attributes(attrs, config)]
    confirmer = PairConfirmer([confirm_row(a, None) for a in attrs], config)
    start = time.perf_counter()
    with beam.Pipeline() as pipeline:
        decisions = (
            pipeline
            | beam.Create(attrs)
            | ImageEdges(config)
            | beam.combiners.ToList()
            | beam.FlatMap(lambda edges: [d.as_tuple() for d in resolve(edges, confirmer)])
        )
        assert_that(decisions, equal_to(expected))
    print(
        f"Beam ImageEdges (DirectRunner) {time.perf_counter() - start:.2f}s:"
        f" decisions equal the in-memory path ({len(expected)} duplicates)"
    )
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uniform", type=int, default=1_000_000)
    parser.add_argument("--tight", type=int, default=20_000)
    parser.add_argument("--exact-tight", type=int, default=3_000)
    parser.add_argument("--exact-uniform", type=int, default=20_000)
    parser.add_argument("--beam", type=int, default=1_190)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "N", "MODE"))
    args = parser.parse_args()
    if args.child:
        kind, n, mode = args.child
        print(json.dumps(run_case(kind, int(n), mode)))
        return
    failures = report_scale(args.uniform, args.tight)
    failures += report_exact(args.exact_tight, args.exact_uniform)
    failures += report_beam(args.beam)
    if failures:
        raise SystemExit("FAILED: " + "; ".join(failures))
    print("all bounds hold")


if __name__ == "__main__":
    main()
