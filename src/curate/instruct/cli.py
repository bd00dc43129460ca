"""`curate export llava --data OUT_DIR --split train --out DIR`."""

from __future__ import annotations

import argparse
import json
import sys

from curate.errors import CurateError


def _export_llava(args: argparse.Namespace) -> int:
    from curate.instruct.export import default_out, export_llava

    try:
        summary = export_llava(args.data, args.split, default_out(args.out))
    except CurateError as exc:
        print(f"curate export llava: {exc.reason}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), indent=1))
    return 0


def register(subparsers) -> None:
    export = subparsers.add_parser("export", help="export curated data to training formats")
    formats = export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    llava = formats.add_parser(
        "llava", help="LLaVA conversation JSON + images/ from instruction shards"
    )
    llava.add_argument(
        "--data", required=True, help="build output directory (OUT_DIR of curate build)"
    )
    llava.add_argument("--split", default="train", help="split to export (default: train)")
    llava.add_argument("--out", required=True, help="directory for llava_<split>.json and images/")
    llava.set_defaults(func=_export_llava)
