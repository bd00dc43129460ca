"""`curate inspect` (kept, rejected, errored and skipped records), `curate why` (where one
record went and why) and `curate schema` (schemas with their field docs).

Reads the build folder with pyarrow alone: no Beam, no torch, so it works on any machine that
has the output (local or on an object store).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from curate.datacard.sections import field_docs
from curate.errors import SpecError
from curate.export.rows import iter_rows
from curate.shards import layout, storage

# What `--rejects/--errors/--skipped` read, and the columns shown first for each.
DROPPED_TABLES = {
    "rejects": ("record_id", "reason", "reject_stage", "duplicate_of", "source_uri"),
    "errors": ("record_id", "unit_id", "stage", "reason", "error_type", "message", "source_uri"),
    "skipped": ("unit_id", "source", "reason", "uri"),
}
TOP_REASONS = 5


def read_manifest(out: str) -> dict[str, Any]:
    text = storage.read_text(storage.join(out, layout.MANIFEST))
    if text is None:
        raise SpecError(f"{out} holds no {layout.MANIFEST}: is it a finished build folder?")
    return json.loads(text)


def _top(reasons: dict[str, int], limit: int = TOP_REASONS) -> str:
    items = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k}={v}" for k, v in items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def summarise(manifest: dict[str, Any], out: str | None = None) -> str:
    """The build in a few lines: counts, the most frequent drop reasons, and (given `out`)
    where the output and the data cards are."""
    units, records, tasks = manifest["units"], manifest["records"], manifest["tasks"]
    lines = [
        f"spec {manifest['spec']['name']} -> schema {manifest['schema']['name']} v{manifest['schema']['version']}",
        f"units: {units['discovered']} found, {units['skipped']} skipped, {units['read']} read, "
        f"{units['failed']} failed; tasks: {tasks['total']} ({tasks['resumed']} resumed)",
        f"records: {records['candidates']} candidates -> {records['kept']} kept "
        f"({_counts(manifest['splits'])}), {records['rejected']} rejected, "
        f"{records['errors']} errors",
    ]
    if manifest.get("instruction_splits"):
        lines.append(f"instructions: {_counts(manifest['instruction_splits'])}")
    if manifest["reject_reasons"]:
        lines.append("rejected: " + _top(manifest["reject_reasons"]))
    if manifest["error_reasons"]:
        lines.append("errors: " + _top(manifest["error_reasons"]))
    holds = all(i["holds"] for i in manifest["identities"])
    lines.append(
        f"accounting identities: {'all hold' if holds else 'BROKEN'} ({len(manifest['identities'])})"
    )
    if out is not None:
        cards = [storage.join(out, layout.DATA_CARD)]
        html = storage.join(out, "DATA_CARD.html")
        if storage.read_text(html) is not None:
            cards.insert(0, html)
        lines.append(f"output: {out}; data card: {' and '.join(cards)}")
        if manifest["reject_reasons"] or manifest["error_reasons"]:
            lines.append(f"dropped records: curate inspect {out} --rejects | --errors | --skipped")
    return "\n".join(lines)


def _short(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > 160:
        return value[:157] + "..."
    if isinstance(value, list) and len(value) > 3:
        return [_short(v) for v in value[:3]] + [f"... {len(value) - 3} more"]
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def _show(row: dict[str, Any]) -> str:
    return "  " + json.dumps({k: _short(v) for k, v in row.items()}, ensure_ascii=False)


def _files(out: str, folder: str) -> list[str]:
    return storage.list_files(storage.join(out, folder), ".parquet")


def _dropped_columns(table: str, chosen: list[str] | None) -> list[str] | None:
    if chosen:
        return chosen
    return [*DROPPED_TABLES[table], "caption", "findings", "impression"]


def inspect_dropped(out: str, table: str, reason: str | None, rows: int, columns: Any) -> int:
    manifest = read_manifest(out)
    counts = {
        "rejects": manifest.get("reject_reasons") or {},
        "errors": manifest.get("error_reasons") or {},
        "skipped": {
            reason: n
            for source in manifest.get("inputs", {}).values()
            for reason, n in source.get("skipped", {}).items()
        },
    }[table]
    total = sum(counts.values())
    print(f"{table}: {total} in {storage.join(out, table)}")
    if counts:
        print("by reason: " + _top(counts, limit=50))
    if reason is not None and reason not in counts:
        print(f"no {table} with reason {reason!r}")
        return 1
    where = ("reason", reason) if reason else None
    label = f" with reason {reason}" if reason else ""
    print(f"\nfirst {rows}{label}:")
    rows_found = iter_rows(_files(out, table), _dropped_columns(table, columns), where)
    for shown, row in enumerate(rows_found):
        if shown >= rows:
            break
        print(_show(row))
    return 0


def inspect_kept(out: str, rows: int, columns: list[str] | None, split: str | None = None) -> int:
    """The summary and `rows` records per split; with `split`, only that split's records."""
    manifest = read_manifest(out)
    if split is not None and split not in manifest["splits"]:
        raise SpecError(f"{out} has no split {split!r}; it has {sorted(manifest['splits'])}")
    if split is None:
        print(summarise(manifest, out))
    for name in [split] if split else sorted(manifest["splits"]):
        files = storage.list_files(storage.join(out, "shards", name), ".parquet")
        print(f"\n[{name}] {manifest['splits'][name]} records; first {rows}:")
        for i, row in enumerate(iter_rows(files, columns)):
            if i >= rows:
                break
            print(_show(row))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    out = str(args.out)
    for table in DROPPED_TABLES:
        if getattr(args, table):
            return inspect_dropped(out, table, args.reason, args.rows, args.columns)
    if args.reason:
        raise SpecError("--reason needs one of --rejects, --errors, --skipped")
    return inspect_kept(out, args.rows, args.columns, args.split)


def find_record(out: str, record_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every place `record_id` (or, for skipped units and unit errors, a unit id) is found:
    (where, row without image bytes)."""
    manifest = read_manifest(out)
    found: list[tuple[str, dict[str, Any]]] = []
    places = [(f"kept in split {s}", storage.join("shards", s)) for s in sorted(manifest["splits"])]
    places += [("rejected", layout.REJECTS), ("error", layout.ERRORS)]
    for what, folder in places:
        for row in iter_rows(_files(out, folder), None, ("record_id", record_id)):
            found.append((what, {k: v for k, v in row.items() if not isinstance(v, bytes)}))
    if not found:  # a unit id: skipped, or failed before it produced records
        for what, folder in (("skipped", layout.SKIPPED), ("error", layout.ERRORS)):
            for row in iter_rows(_files(out, folder), None, ("unit_id", record_id)):
                found.append((what, row))
    return found


def explain(where: str, row: dict[str, Any]) -> str:
    if where.startswith("kept"):
        return f"{where}: passed every rule and dedup step"
    if where == "rejected":
        dup = f", a duplicate of {row['duplicate_of']}" if row.get("duplicate_of") else ""
        return f"rejected at {row.get('reject_stage')}: {row.get('reason')}{dup}"
    if where == "skipped":
        return f"skipped (never read): {row.get('reason')} ({row.get('uri')})"
    return (
        f"error at {row.get('stage')}: {row.get('reason')} ({row.get('error_type')}): "
        f"{row.get('message')}"
    )


def cmd_why(args: argparse.Namespace) -> int:
    found = find_record(str(args.out), args.record_id)
    if not found:
        print(f"{args.record_id}: not in {args.out} (not kept, rejected, errored or skipped)")
        return 1
    for where, row in found:
        print(f"{args.record_id}: {explain(where, row)}")
        if args.full:
            print(_show(row))
    return 0


def resolve_schema_ref(name: str) -> str:
    """`figure_caption` -> its highest version; `figure_caption.v1` as given."""
    from curate.schema import available_schemas

    refs = available_schemas()
    if name in refs:
        return name
    versions = [r for r in refs if r.rsplit(".v", 1)[0] == name]
    if not versions:
        raise SpecError(f"unknown record schema {name!r}; available: {refs}")
    return max(versions, key=lambda r: int(r.rsplit(".v", 1)[1]))


def cmd_schema(args: argparse.Namespace) -> int:
    from curate.schema import available_schemas, load_schema

    if not args.name:
        for ref in available_schemas():
            schema = load_schema(ref)
            print(f"{ref}\thash {schema.hash}\t{len(schema.arrow)} fields")
        return 0
    schema = load_schema(resolve_schema_ref(args.name))
    print(f"{schema.ref} (hash {schema.hash})")
    description = " ".join(str(schema.definition.get("description", "")).split())
    if description:
        print(description)
    width = max(len(name) for name, _, _ in field_docs(schema.definition))
    for name, kind, doc in field_docs(schema.definition):
        print(f"  {name:<{width}}  {kind:<22} {doc}".rstrip())
    return 0


def register(sub: Any) -> None:
    inspect = sub.add_parser(
        "inspect", help="summarise a build and show records: kept, or --rejects/--errors/--skipped"
    )
    inspect.add_argument("out", help="a build's output directory")
    inspect.add_argument("--rows", type=int, default=3, help="records to show (per split)")
    inspect.add_argument("--columns", nargs="*", default=None)
    inspect.add_argument("--split", default=None, help="only this split's records, no summary")
    dropped = inspect.add_mutually_exclusive_group()
    for table in DROPPED_TABLES:
        dropped.add_argument(
            f"--{table}", action="store_true", help=f"show {table}/ with counts by reason"
        )
    inspect.add_argument("--reason", default=None, help="only dropped records with this reason")
    inspect.set_defaults(func=cmd_inspect)

    why = sub.add_parser("why", help="where did a record (or input unit) go, and why")
    why.add_argument("out", help="a build's output directory")
    why.add_argument("record_id", help="a record id (or a unit id for skipped/failed inputs)")
    why.add_argument("--full", action="store_true", help="print the whole row too")
    why.set_defaults(func=cmd_why)

    schema = sub.add_parser("schema", help="list record schemas, or show one with field docs")
    schema.add_argument(
        "name", nargs="?", help="figure_caption (newest version) or figure_caption.v1"
    )
    schema.set_defaults(func=cmd_schema)
