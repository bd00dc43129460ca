"""Caption near-dup in Beam: grouped compact LSH (`CaptionEdges`) vs the former per-bucket path.

The former path (kept below as the baseline, `PerBucketCaptionEdges`) emitted one element per
band per record, each carrying the whole signature, grouped them by (band, key) and verified
every bucket in a Beam call of its own. `curate.dedup.beam.CaptionEdges` shuffles band keys
without signatures, each signature once and candidates' signatures once more, in a few
grouped calls (`curate.dedup.caption_lsh`).

Data: N synthetic captions (default 20,000) with planted rewordings (1-6 word edits, so pairs
fall on both sides of min_jaccard), a tight boilerplate cluster (identical captions and
one-word variants) and short ineligible captions; signatures are computed once, so both paths
start from the same `(record_id, signature, rank)` input. Each path runs in a child process
(FnApiRunner, in_memory) that prints: wall time, Beam calls per step (counters), bytes and
elements per shuffle (curate.shuffle counters) and per record, max RSS, and a digest of the
decisions. The parent checks the digests are equal (and equal to the in-memory grouped steps).

    .venv/bin/python benchmarks/bench_caption_near.py [--n 20000] [--group-size 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from curate.dedup.beam import CALLS_NAMESPACE, CaptionEdges
from curate.dedup.caption_lsh import SignatureBatch, grouped_caption_edges
from curate.dedup.config import NearDedupConfig, TextNearConfig
from curate.dedup.groups import resolve
from curate.dedup.minhash import lsh_band_keys
from curate.dedup.near import eligible_text, text_edges_in_bucket, text_hasher
from curate.shuffle import MeasuredGroupByKey, shuffled_bytes

CAPTION = NearDedupConfig().caption
BATCH = 1024  # NearDuplicates' text batch size
BOILERPLATE = "representative images of the study cohort are shown in this figure panel"

# ---- data ----------------------------------------------------------------------------------


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """~75% originals, ~15% rewordings of them, ~7% boilerplate cluster, ~3% short captions."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(3000)])
    weights = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf-like, as caption words are
    weights /= weights.sum()
    n_copies, n_boiler, n_short = int(0.15 * n), int(0.07 * n), int(0.03 * n)
    n_orig = n - n_copies - n_boiler - n_short
    originals = [
        " ".join(rng.choice(vocab, int(rng.integers(14, 40)), p=weights)) for _ in range(n_orig)
    ]
    copies = []
    for _ in range(n_copies):
        words = originals[int(rng.integers(n_orig))].split()
        for _ in range(int(rng.integers(1, 7))):
            words[int(rng.integers(len(words)))] = str(rng.choice(vocab))
        copies.append(" ".join(words))
    boiler = [
        BOILERPLATE if i % 4 else BOILERPLATE.replace("study", str(rng.choice(vocab)))
        for i in range(n_boiler)
    ]
    short = [f"Figure {i % 9}" for i in range(n_short)]
    captions = originals + copies + boiler + short
    return [captions[i] for i in rng.permutation(len(captions))]


def signed_captions(n: int) -> list[tuple[str, np.ndarray, float]]:
    """(record_id, signature, rank) of the eligible captions, as NearDuplicates makes them."""
    captions = [c for c in synthetic_captions(n) if eligible_text(c, CAPTION)]
    sigs = text_hasher(CAPTION).signatures(captions).values
    ranks = np.random.default_rng(1).integers(1, 5, len(captions)).astype(float) * 1e5
    return [(f"fig-{i:07d}", sigs[i], float(ranks[i])) for i in range(len(captions))]


def as_batches(signed: list[tuple[str, np.ndarray, float]]) -> list[SignatureBatch]:
    return [
        SignatureBatch(
            [s[0] for s in part], np.stack([s[1] for s in part]), np.array([s[2] for s in part])
        )
        for part in (signed[i : i + BATCH] for i in range(0, len(signed), BATCH))
    ]


def digest(decisions: list) -> str:
    return hashlib.sha256(json.dumps(sorted(map(list, decisions))).encode()).hexdigest()[:16]


# ---- the former path (baseline) ------------------------------------------------------------


def _band_items(item: tuple[str, np.ndarray, float], bands: int, rows: int):
    keys = lsh_band_keys(item[1][None, :], bands, rows)[0]
    return [((band, int(key)), item) for band, key in enumerate(keys.tolist())]


def _bucket_edges(kv: tuple[Any, Any], min_jaccard: float) -> list:
    Metrics.counter(CALLS_NAMESPACE, "per_bucket_calls").inc()
    return text_edges_in_bucket(list(kv[1]), min_jaccard)


class PerBucketCaptionEdges(beam.PTransform):
    """The former caption path: one element per band per record (with the signature), one
    Beam call per bucket."""

    def __init__(self, caption: TextNearConfig) -> None:
        super().__init__()
        self.caption = caption

    def expand(self, signed: Any) -> Any:
        cap = self.caption
        return (
            signed
            | "Bands" >> beam.FlatMap(_band_items, cap.bands, cap.rows)
            | "GroupBands" >> MeasuredGroupByKey("per_bucket_caption_bands")
            | "CaptionEdges" >> beam.FlatMap(_bucket_edges, cap.min_jaccard)
        )


# ---- one path in a child process -----------------------------------------------------------


def _load_batch(span: tuple[int, int], folder: str) -> SignatureBatch:
    """One batch of the saved signatures (read in the pipeline, as a build reads its input,
    rather than embedded in the pipeline graph by `beam.Create`)."""
    data = np.load(Path(folder) / "signed.npz")
    start, stop = span
    ids = [f"fig-{i:07d}" for i in range(start, stop)]
    return SignatureBatch(ids, data["sigs"][start:stop], data["ranks"][start:stop])


def _as_signed(batch: SignatureBatch) -> list[tuple[str, np.ndarray, float]]:
    return [(rid, sig, float(rank)) for rid, sig, rank in zip(*batch)]


def _write_decisions(edges: list, path: str) -> None:
    Path(path).write_text(json.dumps([d.as_tuple() for d in resolve(edges)]))


def run_path(path: str, n: int, group_size: int) -> dict[str, Any]:
    signed = signed_captions(n)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pipeline = beam.Pipeline(
        runner=FnApiRunner(),
        options=PipelineOptions(["--direct_running_mode=in_memory", "--direct_num_workers=1"]),
    )
    with tempfile.TemporaryDirectory() as folder:
        sigs = np.stack([s[1] for s in signed])
        np.savez(Path(folder) / "signed.npz", sigs=sigs, ranks=np.array([s[2] for s in signed]))
        spans = [(i, min(i + BATCH, len(signed))) for i in range(0, len(signed), BATCH)]
        batches = pipeline | beam.Create(spans) | beam.Map(_load_batch, folder)
        if path == "per_bucket":
            edges = batches | beam.FlatMap(_as_signed) | PerBucketCaptionEdges(CAPTION)
        else:
            edges = batches | CaptionEdges(CAPTION, group_size)
        out = Path(folder) / "decisions.json"
        _ = (
            edges
            | beam.combiners.ToList()
            | beam.Map(_write_decisions, str(out))  # (a worker's list would not come back)
        )
        start = time.perf_counter()
        result = pipeline.run()
        result.wait_until_finish()
        wall = time.perf_counter() - start
        decisions = [tuple(d) for d in json.loads(out.read_text())]
    calls = {
        c.key.metric.name: int(c.committed or c.attempted or 0)
        for c in result.metrics().query(MetricsFilter().with_namespace(CALLS_NAMESPACE))["counters"]
    }
    return {
        "path": path,
        "records": len(signed),
        "wall_s": wall,
        "calls": calls,
        "shuffle": shuffled_bytes(result.metrics()),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before,
        "decisions": len(decisions),
        "digest": digest(decisions),
    }


def child(path: str, n: int, group_size: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", path, str(n), str(group_size)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(run: dict[str, Any]) -> None:
    n = run["records"]
    print(f"== {run['path']}: {run['wall_s']:.1f}s wall, {run['decisions']} decisions")
    print(f"   Beam calls of the grouped steps: {run['calls']}")
    total = 0
    for label, entry in run["shuffle"].items():
        total += entry["bytes"]
        print(
            f"   shuffle {label}: {entry['bytes'] / 1e6:.1f} MB in {entry['elements']:,}"
            f" elements, {entry['bytes'] / n:,.0f} B/record"
        )
    print(f"   all shuffles: {total / n:,.0f} B/record")
    grown = run["max_rss_mb"] - run["rss_before_mb"]
    print(f"   max RSS {run['max_rss_mb']:.0f} MB (+{grown:.0f} MB while the pipeline ran)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--group-size", type=int, default=NearDedupConfig().image.beam_group_size)
    parser.add_argument("--child", nargs=3, metavar=("PATH", "N", "GROUP_SIZE"))
    args = parser.parse_args()
    if args.child:
        path, n, group_size = args.child
        print(json.dumps(run_path(path, int(n), int(group_size))))
        return
    signed = signed_captions(args.n)
    start = time.perf_counter()
    cap = CAPTION
    edges = grouped_caption_edges(
        as_batches(signed), cap.bands, cap.rows, cap.min_jaccard, args.group_size
    )
    in_memory = [d.as_tuple() for d in resolve(edges)]
    print(
        f"{len(signed):,} eligible captions of {args.n:,}; in-memory grouped steps"
        f" {time.perf_counter() - start:.2f}s, {len(in_memory)} decisions"
    )
    old = child("per_bucket", args.n, args.group_size)
    new = child("grouped", args.n, args.group_size)
    report(old)
    report(new)
    old_bytes = sum(e["bytes"] for e in old["shuffle"].values())
    new_bytes = sum(e["bytes"] for e in new["shuffle"].values())
    print(
        f"grouped vs per-bucket: {old['wall_s'] / new['wall_s']:.1f}x faster,"
        f" {old_bytes / new_bytes:.1f}x fewer bytes shuffled,"
        f" {sum(old['calls'].values()):,} -> {sum(new['calls'].values()):,} grouped-step calls"
    )
    same = old["digest"] == new["digest"] == digest(in_memory)
    print(f"same decisions (per-bucket, grouped, in-memory): {same}")
    if not same:
        raise SystemExit("FAILED: decisions differ")


if __name__ == "__main__":
    main()
