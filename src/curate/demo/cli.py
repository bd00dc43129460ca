"""CLI for the generated demo corpora: `curate pmc-demo` writes the PMC demo corpus."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _demo(args: argparse.Namespace) -> int:
    from curate.demo.pmc import generate_pmc_demo

    planted = generate_pmc_demo(args.out, seed=args.seed)
    json.dump(planted, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "pmc-demo", help="write the deterministic PMC demo corpus (3 layouts)"
    )
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
