"""`curate` command line: validate, build, plan, inspect, schema, plus the commands of optional
parts (kb, benchmark, export, train, eval), each registered by its own package."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from curate import __version__
from curate.cli_inspect import register as register_inspect
from curate.cli_inspect import summarise
from curate.errors import CurateError, SpecError

PLUGIN_CLIS = (
    "curate.demo.cli",
    "curate.sources.pmc_cli",
    "curate.enrich.link.cli",
    "curate.decontaminate.cli",
    "curate.instruct.cli",
    "curate.export.cli",  # after instruct.cli: adds formats to its `export` command
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
    from curate.build.driver import build
    from curate.extras import check_spec
    from curate.progress import Progress
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
    check_spec(loaded.spec, args.out)  # a missing extra: one line naming it, before any work
    out_dir = runner.resolve_paths({"--out": args.out})["--out"]
    progress = Progress(loaded.spec.name)
    result = build(loaded, out_dir, runner, fresh=args.fresh, progress=progress)
    print(summarise(result.manifest, out_dir))
    if not result.ok:
        print(f"build FAILED: {result.message}", file=sys.stderr)
        return 1
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from curate.build.calibrate import calibrate
    from curate.build.estimate import Assumptions, load_prices
    from curate.build.plan_report import render_text
    from curate.extras import check_spec
    from curate.runners import RunnerChoice
    from curate.spec import load_spec

    if args.sample is not None and args.sample < 1:
        raise SpecError(f"--sample needs at least one unit, not {args.sample}")
    prices = load_prices(args.machines)  # a bad price file fails before the sample build
    loaded = load_spec(args.spec, args.source, args.set)
    check_spec(loaded.spec)
    runner = RunnerChoice(running_mode=args.running_mode, num_workers=args.workers)
    assume = Assumptions(units=args.assume_units, records_per_unit=args.assume_records_per_unit)
    result = calibrate(loaded, runner, prices, sample=args.sample, assume=assume)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1, sort_keys=True))
    else:
        print(render_text(result))
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

    register_inspect(sub)

    for module_name in PLUGIN_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that part is not in this checkout
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from curate import logs

    words = sys.argv[1:] if argv is None else argv
    logs.configure(verbose="-v" in words or "--verbose" in words)
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
