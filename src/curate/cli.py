"""`curate` command line: validate, build, plan, inspect, schema, plus the commands of optional
parts (kb, benchmark, export, train, eval), each registered by its own package."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from curate import __version__
from curate.errors import CurateError, SpecError

PLUGIN_CLIS = (
    "curate.demo.cli",
    "curate.sources.pmc_cli",
    "curate.enrich.link.cli",
    "curate.decontaminate.cli",
    "curate.instruct.cli",
    "curate.train.cli",
)


def _add_spec_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec", required=True, help="bundled spec stem (demo, pmc15m, ...) or a YAML path"
    )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="point a spec source at another path (local, gs://, s3://); repeatable",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any spec field by dotted path, value parsed as YAML "
        "(e.g. --set split.seed=7 --set output.shard_rows=500); repeatable",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from curate.spec import resolve_spec_path, validate_spec

    try:
        path = resolve_spec_path(args.spec)
    except SpecError as exc:
        print(f"{args.spec}:1: {exc}", file=sys.stderr)
        return 2
    loaded, problems = validate_spec(path, args.source, args.set, check_inputs=True)
    for problem in problems:
        print(problem, file=sys.stderr)
    if loaded is None:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"{path}: ok (spec {loaded.spec.name}, schema {loaded.spec.schema_}, sha256 {loaded.sha256[:12]})"
    )
    return 0


def cmd_build(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curate.build import build
    from curate.runners import RunnerChoice
    from curate.spec import load_spec

    loaded = load_spec(args.spec, args.source, args.set)
    runner = RunnerChoice(
        runner=args.runner,
        running_mode=args.running_mode,
        num_workers=args.workers,
        beam_args=beam_args,
    )
    runner.check_beam_version()
    out_dir = runner.resolve_paths({"--out": args.out})["--out"]
    result = build(loaded, out_dir, runner, fresh=args.fresh)
    summary = summarise(result.manifest)
    print(summary)
    if not result.ok:
        print(f"build FAILED: {result.message}", file=sys.stderr)
        return 1
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from curate.build.calibrate import calibrate
    from curate.build.estimate import Assumptions, load_prices
    from curate.build.plan_report import render_text
    from curate.runners import RunnerChoice
    from curate.spec import load_spec

    if args.sample is not None and args.sample < 1:
        raise SpecError(f"--sample needs at least one unit, not {args.sample}")
    prices = load_prices(args.machines)  # a bad price file fails before the sample build
    loaded = load_spec(args.spec, args.source, args.set)
    runner = RunnerChoice(running_mode=args.running_mode, num_workers=args.workers)
    assume = Assumptions(units=args.assume_units, records_per_unit=args.assume_records_per_unit)
    result = calibrate(loaded, runner, prices, sample=args.sample, assume=assume)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1, sort_keys=True))
    else:
        print(render_text(result))
    return 0


def summarise(manifest: dict[str, Any]) -> str:
    lines = [
        f"spec {manifest['spec']['name']} -> schema {manifest['schema']['name']} v{manifest['schema']['version']}",
        f"units: {manifest['units']}",
        f"records: {manifest['records']}",
        f"splits: {manifest['splits']}",
        f"tasks: {manifest['tasks']}",
    ]
    if manifest.get("instruction_splits"):
        lines.append(f"instructions: {manifest['instruction_splits']}")
    if manifest["reject_reasons"]:
        lines.append(
            "rejected: " + ", ".join(f"{k}={v}" for k, v in manifest["reject_reasons"].items())
        )
    if manifest["error_reasons"]:
        lines.append(
            "errors: " + ", ".join(f"{k}={v}" for k, v in manifest["error_reasons"].items())
        )
    holds = all(i["holds"] for i in manifest["identities"])
    lines.append(
        f"accounting identities: {'all hold' if holds else 'BROKEN'} ({len(manifest['identities'])})"
    )
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    from curate.shards.layout import MANIFEST
    from curate.shards.loader import load_shards

    out = Path(args.out)
    manifest = json.loads((out / MANIFEST).read_text())
    print(summarise(manifest))
    print(f"shards in {out / 'shards'}")
    for split in sorted(manifest["splits"]):
        dataset = load_shards(out, split=split, columns=args.columns)
        print(f"\n[{split}] {len(dataset)} records; first {args.rows}:")
        for i, row in enumerate(dataset):
            if i >= args.rows:
                break
            print("  " + json.dumps({k: _short(v) for k, v in row.items()}, ensure_ascii=False))
        if args.rows == 0:
            continue
    return 0


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


def cmd_schema(args: argparse.Namespace) -> int:
    from curate.schema import available_schemas, load_schema

    if not args.name:
        for ref in available_schemas():
            schema = load_schema(ref)
            print(f"{ref}\thash {schema.hash}\t{len(schema.arrow)} fields")
        return 0
    schema = load_schema(args.name)
    print(f"{schema.ref} (hash {schema.hash})")
    print(schema.arrow.to_string(show_schema_metadata=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser(
        "validate", help="check a spec and its rule files; problems as file:line"
    )
    _add_spec_overrides(validate)
    validate.set_defaults(func=cmd_validate)

    build = sub.add_parser(
        "build",
        help="run a spec; unknown --options are passed to Beam (e.g. --project, --region, --temp_location)",
    )
    _add_spec_overrides(build)
    build.add_argument("--out", required=True, help="output directory (local, gs://, s3://)")
    build.add_argument(
        "--runner",
        default="local",
        help="local (FnApiRunner, default) or a Beam runner name: DataflowRunner, FlinkRunner, SparkRunner",
    )
    build.add_argument(
        "--running-mode",
        default="multi_processing",
        choices=["multi_processing", "multi_threading", "in_memory"],
        help="FnApiRunner mode for local builds",
    )
    build.add_argument("--workers", type=int, default=0, help="local workers (default: all cores)")
    build.add_argument(
        "--fresh", action="store_true", help="discard earlier work in --out instead of resuming"
    )
    build.set_defaults(func=cmd_build, takes_beam_args=True)

    plan = sub.add_parser(
        "plan",
        help="discover the inputs, build a sample in a temporary folder, and project records, "
        "bytes, worker-hours and cost of the full build per machine type",
    )
    _add_spec_overrides(plan)
    plan.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="calibrate on N units per source, evenly spaced by unit id (default: every unit)",
    )
    plan.add_argument(
        "--machines",
        default=None,
        metavar="FILE",
        help="machine price list (default: the bundled curation_rules/machines.v1.yaml)",
    )
    plan.add_argument(
        "--assume-units",
        type=int,
        default=None,
        metavar="N",
        help="project to N units instead of the discovered ones (e.g. the full PMC OA subset)",
    )
    plan.add_argument(
        "--assume-records-per-unit",
        type=float,
        default=None,
        metavar="R",
        help="records per unit to project with, instead of the sample's",
    )
    plan.add_argument(
        "--running-mode",
        default="in_memory",
        choices=["multi_processing", "multi_threading", "in_memory"],
        help="FnApiRunner mode of the calibration build (default in_memory: CPU per record does "
        "not depend on parallelism, and one process counts all of it without worker start-up)",
    )
    plan.add_argument("--workers", type=int, default=0, help="local workers (default: all cores)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    inspect = sub.add_parser("inspect", help="summarise a build and show a few records")
    inspect.add_argument("out", help="a build's output directory")
    inspect.add_argument("--rows", type=int, default=3)
    inspect.add_argument("--columns", nargs="*", default=None)
    inspect.set_defaults(func=cmd_inspect)

    schema = sub.add_parser("schema", help="list record schemas or show one")
    schema.add_argument("name", nargs="?", help="e.g. figure_caption.v1")
    schema.set_defaults(func=cmd_schema)

    for module_name in PLUGIN_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that part is not in this checkout
            raise
        module.register(sub)
    return parser


class _QuietBeamImport(logging.Filter):
    # Beam's GCP module warns on import when its optional clients are absent; for local builds
    # that line is noise in every command's output.
    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    verbose = bool(argv and ("-v" in argv or "--verbose" in argv)) or (
        argv is None and ("-v" in sys.argv or "--verbose" in sys.argv)
    )
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietBeamImport())
    if not verbose:
        # Local workers' start-up notices, relayed by the job service, are not the user's concern.
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(
            logging.ERROR
        )
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_beam_args", False):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        if getattr(args, "takes_beam_args", False):
            return int(args.func(args, extra))
        return int(args.func(args))
    except CurateError as exc:
        print(f"curate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
