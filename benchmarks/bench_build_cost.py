"""End-to-end build cost on a demo_cohort-like corpus (generated input excluded from timings).

Baseline: the same build stopped after phase 1 (prepare, the planning pipeline, phase 1: read,
parse, rules, hashes) on the same corpus, timed in the same run. Each is timed `--repeat` times
(default 2), interleaved, and the fastest of each is compared: this machine is shared, and a
busy moment would otherwise decide the ratio.
Prints:
  - the whole build's throughput as a fraction of phase 1's (goal >= 0.5);
  - bytes shuffled per kept record, from the build's own shuffle counters (curate.shuffle),
    as a fraction of the mean kept record's size (pickled, image bytes included; goal <= 1.2);
  - with --memory, the peak RSS of in-process local builds (FnApiRunner in_memory: the runner
    holds every shuffle in memory, the worst case) at growing corpus sizes (goal: flat, and
    <= 2 GB; at 100,000 figures with --memory-sizes 67000).

    .venv/bin/python benchmarks/bench_build_cost.py [--articles 800] [--repeat 2]
        [--memory --memory-sizes 800 8000] [--set dedup.near.group_labels=distributed]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = "pmc_cohort"


def generate(folder: Path, articles: int) -> Path:
    from curate.demo.cohort import generate_pmc_cohort

    generate_pmc_cohort(str(folder), articles=articles)
    return folder / "folder"


SPEC_SETS: list[str] = []  # --set KEY=VALUE overrides of the spec, for both sides


def load(corpus: Path, running_mode: str):
    from curate.runners import RunnerChoice
    from curate.spec import load_spec

    loaded = load_spec("demo_cohort", sources=[f"{SOURCE}={corpus}"], sets=SPEC_SETS)
    return loaded, RunnerChoice(running_mode=running_mode)


def phase1_only(corpus: Path, out: Path, running_mode: str) -> tuple[float, int]:
    """The same build stopped after phase 1 (prepare, plan pipeline, phase-1 tasks)."""
    from curate.build.driver import Build

    loaded, runner = load(corpus, running_mode)
    started = time.perf_counter()
    result = Build(loaded, str(out), runner, fresh=True).run(phase2=False)
    return time.perf_counter() - started, result.discovered.tasks


def whole_build(corpus: Path, out: Path, running_mode: str) -> tuple[float, dict]:
    from curate.build.driver import build

    loaded, runner = load(corpus, running_mode)
    started = time.perf_counter()
    result = build(loaded, str(out), runner, fresh=True)
    assert result.ok, result.message
    return time.perf_counter() - started, result.manifest


def shuffle_per_record(out: Path, manifest: dict) -> tuple[float, float, dict]:
    """(bytes shuffled per kept record, mean kept record size, per-shuffle table)."""
    import pyarrow.parquet as pq

    table = manifest["shuffle"]
    total = sum(entry["bytes"] for entry in table.values())
    kept = manifest["records"]["kept"]
    sizes = []
    for path in sorted((out / "shards").rglob("*.parquet")):
        sizes.extend(
            len(pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL))
            for row in pq.read_table(path).to_pylist()
        )
    return total / max(1, kept), sum(sizes) / max(1, len(sizes)), table


def measure_memory(articles: int) -> None:
    """Child process: one in-memory build; prints figures and peak RSS (MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = generate(Path(tmp) / "corpus", articles)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _, manifest = whole_build(corpus, Path(tmp) / "out", "in_memory")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            json.dumps(
                {
                    "figures": manifest["records"]["candidates"],
                    "peak_mb": peak / 1024,
                    "before_build_mb": before / 1024,
                }
            )
        )


def memory_table(sizes: list[int]) -> bool:
    rows = []
    for articles in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(articles)]
            + [f"--set={item}" for item in SPEC_SETS],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("\npeak memory of an in-process local build (FnApiRunner in_memory):")
    print(f"  {'figures':>8} {'peak MB':>9}")
    for row in rows:
        print(f"  {row['figures']:>8} {row['peak_mb']:>9.0f}")
    first, last = rows[0], rows[-1]
    slope = (last["peak_mb"] - first["peak_mb"]) / max(1, last["figures"] - first["figures"])
    print(f"  growth: {slope * 1024:.1f} KB per figure (before the compact phase 2: ~180 KB)")
    return all(r["peak_mb"] <= 2048 for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=800)
    parser.add_argument("--running-mode", default="multi_processing")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; the fastest")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[800, 4000])
    parser.add_argument("--memory-child", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    SPEC_SETS[:] = args.set
    if args.memory_child:
        measure_memory(args.memory_child)
        return 0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = generate(root / "corpus", args.articles)
        phase1_runs, whole_runs = [], []
        for attempt in range(args.repeat):
            phase1_s, tasks = phase1_only(corpus, root / f"phase1_{attempt}", args.running_mode)
            whole_s, manifest = whole_build(corpus, root / f"whole_{attempt}", args.running_mode)
            phase1_runs.append(phase1_s)
            whole_runs.append(whole_s)
        phase1_s, whole_s = min(phase1_runs), min(whole_runs)
        print(
            "runs (s): phase 1 alone "
            + ", ".join(f"{t:.1f}" for t in phase1_runs)
            + "; whole build "
            + ", ".join(f"{t:.1f}" for t in whole_runs)
        )
        figures = manifest["records"]["candidates"]
        ratio = phase1_s / whole_s
        print(
            f"corpus: {args.articles} articles, {figures} figures, {tasks} tasks "
            f"({args.running_mode}, generation excluded)"
        )
        print(f"phase 1 alone: {phase1_s:.1f} s ({figures / phase1_s:.0f} figures/s)")
        print(f"whole build:   {whole_s:.1f} s ({figures / whole_s:.0f} figures/s)")
        print(f"whole-build throughput / phase-1 throughput: {ratio:.2f} (goal >= 0.5)")
        ok &= ratio >= 0.5
        per_record, record_size, table = shuffle_per_record(
            root / f"whole_{args.repeat - 1}", manifest
        )
        print(
            f"bytes shuffled per kept record: {per_record:.0f} B; mean kept record: "
            f"{record_size:.0f} B; ratio {per_record / record_size:.3f} (goal <= 1.2)"
        )
        for label, entry in table.items():
            print(f"  {label:<32} {entry['elements']:>8} elements {entry['bytes']:>12} B")
        ok &= per_record / record_size <= 1.2
    if args.memory:
        ok &= memory_table(args.memory_sizes)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
