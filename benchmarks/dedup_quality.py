"""Measured dedup quality: precision and recall of each method on planted near-duplicates.

The set (curate.demo.near_duplicates) has figure-like originals and planted copies: re-encoded,
resized, cropped, brightness-shifted images (with unrelated captions) and reworded captions
(with unrelated images). Target: recall >= 0.95 at precision >= 0.99 for re-encoded and resized.

Run: .venv/bin/python benchmarks/dedup_quality.py [--originals 300 --copies 60] [--semantic]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from curate.dedup.config import NearDedupConfig, SemanticDedupConfig
from curate.dedup.near import find_near_duplicates
from curate.dedup.semantic import find_semantic_duplicates
from curate.demo.near_duplicates import generate, score
from curate.embed.beam import embed_records
from curate.embed.config import EmbedConfig


def report(name: str, result: dict, seconds: float) -> None:
    parts = [f"precision {result['all']['precision']:.3f} ({result['all']['drops']} drops)"]
    parts += [f"{k} recall {v['recall']:.3f}" for k, v in result.items() if k != "all"]
    print(f"{name:<22} {seconds:5.1f}s  " + "  ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--copies", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--semantic", action="store_true", help="also MiniLM text SemDeDup (slower)"
    )
    args = parser.parse_args()
    planted = generate(args.originals, args.copies, args.seed)
    records = [p.record for p in planted]
    print(f"{len(records)} records: {args.originals} originals, {args.copies} copies per variant")
    base = NearDedupConfig()
    for method in ("phash", "dhash"):
        config = base.model_copy(
            update={
                "image": base.image.model_copy(update={"hash": method}),
                "caption": base.caption.model_copy(update={"enabled": False}),
            }
        )
        start = time.perf_counter()
        decisions = [d.as_tuple() for d in find_near_duplicates(records, config)]
        report(f"image {method}", score(planted, decisions), time.perf_counter() - start)
    config = base.model_copy(update={"image": base.image.model_copy(update={"enabled": False})})
    start = time.perf_counter()
    decisions = [d.as_tuple() for d in find_near_duplicates(records, config)]
    report("caption minhash", score(planted, decisions), time.perf_counter() - start)
    start = time.perf_counter()
    decisions = [d.as_tuple() for d in find_near_duplicates(records, base)]
    report("image+caption", score(planted, decisions), time.perf_counter() - start)

    start = time.perf_counter()
    vectors, _, _ = embed_records(records, EmbedConfig(device="cpu"), "image")
    ids = [r for r, _ in vectors]
    matrix = np.stack([v for _, v in vectors])
    for eps in (0.01, 0.02, 0.05):
        decisions = [
            d.as_tuple()
            for d in find_semantic_duplicates(
                ids, matrix, SemanticDedupConfig(enabled=True, eps=eps)
            )
        ]
        report(f"semantic dct eps={eps}", score(planted, decisions), time.perf_counter() - start)
    if args.semantic:
        start = time.perf_counter()
        vectors, _, _ = embed_records(records, EmbedConfig(device="cpu"), "text")
        ids = [r for r, _ in vectors]
        decisions = [
            d.as_tuple()
            for d in find_semantic_duplicates(
                ids, np.stack([v for _, v in vectors]), SemanticDedupConfig(enabled=True)
            )
        ]
        report("semantic minilm", score(planted, decisions), time.perf_counter() - start)


if __name__ == "__main__":
    main()
