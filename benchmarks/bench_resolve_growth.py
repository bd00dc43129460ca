"""How near-dup group resolution grows with the collection.

Phase 2 resolves each near-dup candidate group in its own call on the workers
(curate.dedup.beam.ConfirmedGroups -> curate.dedup.groups.resolve with
curate.dedup.confirm.PairConfirmer). Crop-window candidates (10 pHashes per image within 10
bits) link similar figures into large groups whose members are mostly not copies. The keeper
loop, which confirms the kept record against every other member, then the best of those left,
and so on, was quadratic in such a group: x6.8 resolve CPU for x3 figures (1.0 -> 6.9 s) at
46fdb15. A group of more than `split_groups_above` records is now split first: records link
only by confirmed pairs, among its given edges and each record's `split_neighbours` nearest by
pHash, gradient hash and crop windows (curate.dedup.imagehash.nearest_pairs), so the keeper
loop meets the members of small parts.
This sums the CPU of every group's call.

Baseline: the same build at the smaller size. In one run this builds the demo cohort
(curate.demo.cohort, in-process runner) at each size and prints, per size, the figures, the
largest candidate group, the largest part a keeper loop met after the split and the CPU
seconds of the resolve call; then the growth against the smallest size. Near-linear
resolution grows like the figures; this exits non-zero when resolve grows more than twice as
fast as the figures. The alignments a record needs grow until its nearest candidates are all
within reach, so the ratio sits above the figures' growth at the small sizes: 0.8, 4.0 and
9.7 s at 800, 2,400 and 4,800 articles (x5.0 for x3 figures, then x2.4 for x2).

    .venv/bin/python benchmarks/bench_resolve_growth.py [--articles 800 2400 [4800]]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_build_cost  # noqa: E402  (this folder's cohort generator and build helpers)


def measure(articles: int) -> dict[str, float]:
    import curate.dedup.beam as dedup_beam
    import curate.dedup.groups as groups_module
    from curate.dedup.groups import _connected_groups, resolve

    seen: dict[str, float] = {"largest": 0, "largest_part": 0, "resolve_s": 0.0}
    split = groups_module._split_large_groups

    def parts(groups, edges, confirmer):
        out = split(groups, edges, confirmer)
        seen["largest_part"] = max([seen["largest_part"], *map(len, out)])
        return out

    def timed(edges, confirmer=None):
        edges = list(edges)
        groups, _ = _connected_groups(edges)
        seen["largest"] = max([seen["largest"], *map(len, groups)])
        started = time.process_time()
        out = resolve(edges, confirmer)
        seen["resolve_s"] += time.process_time() - started
        return out

    dedup_beam.resolve = timed  # the phase-2 resolve step calls it by this name
    groups_module._split_large_groups = parts
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = bench_build_cost.generate(Path(tmp) / "corpus", articles)
            _, manifest = bench_build_cost.whole_build(corpus, Path(tmp) / "out", "in_memory")
    finally:
        dedup_beam.resolve = resolve
        groups_module._split_large_groups = split
    return {"figures": manifest["records"]["candidates"], **seen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, nargs="+", default=[800, 2400])
    args = parser.parse_args()
    rows = [measure(n) for n in args.articles]
    print(
        f"{'articles':>8} {'figures':>8} {'largest group':>14} {'largest part':>13}"
        f" {'resolve CPU s':>14}"
    )
    for n, row in zip(args.articles, rows):
        print(
            f"{n:>8} {row['figures']:>8} {row['largest']:>14} {row['largest_part']:>13}"
            f" {row['resolve_s']:>14.1f}"
        )
    first, last = rows[0], rows[-1]
    figures = last["figures"] / first["figures"]
    growth = last["resolve_s"] / max(first["resolve_s"], 1e-9)
    ok = growth <= 2 * figures
    print(
        f"growth vs {args.articles[0]} articles: figures x{figures:.1f}, resolve x{growth:.1f}"
        f" ({'near-linear' if ok else 'FAIL: faster than linear'}; quadratic would be"
        f" x{figures**2:.1f})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
