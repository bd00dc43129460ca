"""`curate export hf` and `curate export webdataset`, added beside `curate export llava`."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _export_hf(args: argparse.Namespace) -> int:
    from curate.shards.hf import export_hf

    summary = export_hf(args.data, args.out, args.split or None)
    print(json.dumps(summary, indent=1))
    print(f'load it with: datasets.load_dataset("{args.out}")')
    return 0


def _export_webdataset(args: argparse.Namespace) -> int:
    from curate.export.webdataset import export_webdataset

    summary = export_webdataset(
        args.data,
        args.out,
        args.split,
        shard_size=args.shard_size,
        text_column=args.text_column,
    )
    print(json.dumps(summary, indent=1))
    return 0


def _formats(subparsers: Any) -> Any:
    """The `export` command's format sub-commands (created when no other part made it)."""
    export = subparsers.choices.get("export")
    if export is None:
        export = subparsers.add_parser("export", help="export curated data to training formats")
        return export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    for action in export._actions:  # argparse keeps a parser's sub-commands only there
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise AssertionError("the export command has no formats")


def register(subparsers: Any) -> None:
    formats = _formats(subparsers)
    hf = formats.add_parser(
        "hf", help="Parquet + README for datasets.load_dataset, images as datasets.Image()"
    )
    hf.add_argument("--data", required=True, help="build output directory")
    hf.add_argument("--out", required=True, help="folder to write data/ and README.md into")
    hf.add_argument("--split", action="append", default=[], help="a split (default: all)")
    hf.set_defaults(func=_export_hf)

    wds = formats.add_parser(
        "webdataset", help="tar shards of jpg/png + txt + json (open_clip, img2dataset layout)"
    )
    wds.add_argument("--data", required=True, help="build output directory")
    wds.add_argument("--out", required=True, help="folder for <split>-NNNNNN.tar and sizes.json")
    wds.add_argument("--split", default="train", help="split to export (default: train)")
    wds.add_argument("--shard-size", type=int, default=10_000, help="samples per tar")
    wds.add_argument(
        "--text-column", default=None, help="column for .txt (default: caption or report text)"
    )
    wds.set_defaults(func=_export_webdataset)
