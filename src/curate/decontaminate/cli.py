"""`curate benchmark add|list`: build and inspect the decontamination index."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curate.decontaminate.benchmarks import LOADERS, build_benchmark
from curate.decontaminate.config import DecontamConfig
from curate.errors import CurateError


def _add(args: argparse.Namespace) -> int:
    config = DecontamConfig.from_rules(args.rules) if args.rules else DecontamConfig()
    try:
        summary = build_benchmark(args.name, args.format, args.path, args.index, config)
    except CurateError as exc:
        print(f"curate benchmark add: {exc} [{exc.reason}]", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _list(args: argparse.Namespace) -> int:
    manifest = Path(args.index) / "index.json"
    if not manifest.is_file():
        print(f"curate benchmark list: no index at {args.index}", file=sys.stderr)
        return 2
    print(manifest.read_text())
    return 0


def register(subparsers) -> None:
    bench = subparsers.add_parser("benchmark", help="evaluation sets to decontaminate against")
    sub = bench.add_subparsers(dest="benchmark_command", required=True)
    add = sub.add_parser(
        "add", help="index an evaluation set (images by pHash, texts by n-grams and embeddings)"
    )
    add.add_argument(
        "--name", required=True, help="benchmark name, used in `benchmark_leak:<name>`"
    )
    add.add_argument("--format", required=True, choices=sorted(LOADERS))
    add.add_argument("--path", required=True, help="folder of the evaluation set as released")
    add.add_argument(
        "--index", required=True, help="index folder (created; one Parquet per benchmark)"
    )
    add.add_argument(
        "--rules",
        default="dedup/decontam.v2",
        help="decontamination rule file (v2 also stores question embeddings for paraphrases)",
    )
    add.set_defaults(func=_add)
    show = sub.add_parser("list", help="show the benchmarks in an index")
    show.add_argument("--index", required=True)
    show.set_defaults(func=_list)
