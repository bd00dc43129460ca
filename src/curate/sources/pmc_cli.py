"""CLI for the PMC source: `curate pmc-inspect` parses JATS files (or a whole PMC input folder)
and prints one JSON line per figure record."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _inspect(args: argparse.Namespace) -> int:
    from curate.sources.pmc import PMCSource
    from curate.stages import Failed, Rejected

    source = PMCSource(args.path, {"layout": args.layout})
    status = 0
    for unit in source.discover():
        if unit.skip_reason:
            print(json.dumps({"unit_id": unit.unit_id, "skipped": unit.skip_reason}))
            continue
        try:
            for item in source.read(unit):
                row: dict[str, Any]
                if isinstance(item, Rejected):
                    row = {"rejected": item.reason, **item.record}
                elif isinstance(item, Failed):
                    row = {"failed": item.reason, **item.as_row()}
                else:
                    row = dict(item)
                row.pop("image", None)
                print(json.dumps(row, ensure_ascii=False, sort_keys=True))
        except Exception as exc:  # noqa: BLE001 - report the unit and go on, like the engine
            status = 1
            print(
                json.dumps(
                    {
                        "unit_id": unit.unit_id,
                        "uri": unit.uri,
                        "error": type(exc).__name__,
                        "reason": getattr(exc, "reason", "unexpected_error"),
                        "message": str(exc),
                    }
                )
            )
    return status


def register(subparsers: Any) -> None:
    inspect = subparsers.add_parser(
        "pmc-inspect", help="print figure records of a PMC input as JSON lines"
    )
    inspect.add_argument(
        "path", help="a JATS file, a folder, a PMC Cloud mirror or a legacy mirror"
    )
    inspect.add_argument("--layout", choices=["auto", "cloud", "legacy", "folder"], default="auto")
    inspect.set_defaults(func=_inspect)
