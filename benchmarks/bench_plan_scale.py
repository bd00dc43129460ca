"""Planning at PMC scale: the driver's share of planning a generated 1,000,000-version inventory,
and the submission of the planning job through the PortableRunner (Beam's job service and an
EXTERNAL worker pool on 127.0.0.1, as a Flink/Spark user would).

Baseline: the driver-side discovery of earlier versions on the same inventory (every version
expanded and settled in the driver, the tasks embedded in the job graph by `beam.Create`).
Prints, for each, wall time, peak driver RSS and the serialized pipeline proto's size
(Dataflow refuses job graphs over ~20 MB). Goals: < 2 minutes, < 2 GB RSS, proto < 1 MB.

    .venv/bin/python benchmarks/bench_plan_scale.py [--versions 1000000] [--baseline-versions N]

The inventory is generated (never downloaded): CSV.gz shards of `metadata/PMC<id>.<v>.json`
keys, no header, like the bucket's daily S3 inventory; about 7 % of articles have 2 versions.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS_PER_SHARD = 10_000
BUCKET = "pmc-oa-opendata"


def generate_inventory(folder: Path, versions: int) -> int:
    """`versions` metadata keys over shards of ROWS_PER_SHARD rows; returns the shard count.
    Versions of one article are dealt to different shards, as a real inventory may."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    pmcid = 1_000_000
    while len(keys) < versions:
        pmcid += 1
        keys.append(f"metadata/PMC{pmcid}.1.json")
        if pmcid % 14 == 0 and len(keys) < versions:
            keys.append(f"metadata/PMC{pmcid}.2.json")
    shards = (len(keys) + ROWS_PER_SHARD - 1) // ROWS_PER_SHARD
    for shard in range(shards):
        rows = keys[shard::shards]
        text = "".join(
            f'"{BUCKET}","{key}","2026-09-01T00:00:00.000Z","0123456789abcdef"\n' for key in rows
        )
        (folder / f"shard-{shard:05d}.csv.gz").write_bytes(gzip.compress(text.encode(), 1))
    return shards


def source_ref(root: Path, inventory: Path):
    from curate.build.plan import SourceRef

    options = {"layout": "cloud", "inventory": str(inventory)}
    return SourceRef("pmc", "pmc", str(root), options)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def driver_today(root: Path, inventory: Path, out: Path, job_port: int, pool_port: int) -> dict:
    """Child process: partitions in the driver, the planning pipeline built and submitted."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.build.plan import PlanInputs, pieces

    started = time.perf_counter()
    refs = [source_ref(root, inventory)]
    piece_list = pieces(refs)
    options = PipelineOptions(
        [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | "Pieces" >> beam.Create(piece_list, reshuffle=False)
        | "Plan" >> PlanInputs(refs, str(out), 16)
    )
    proto = len(pipeline.to_runner_api().SerializeToString())
    planned = time.perf_counter() - started
    result = pipeline.run()  # returns once the job service accepted the job
    submitted = time.perf_counter() - started
    state = str(result.state)
    with contextlib.suppress(Exception):  # a job that already failed cannot be cancelled
        result.cancel()
    return {
        "pieces": len(piece_list),
        "plan_s": planned,
        "submit_s": submitted,
        "proto_bytes": proto,
        "rss_mb": peak_rss_mb(),
        "state": state,
    }


def driver_baseline(root: Path, inventory: Path) -> dict:
    """Child process: every version expanded and settled in the driver, tasks in the graph."""
    import apache_beam as beam

    from curate.build.plan import make_tasks
    from curate.sources.base import discover_units

    started = time.perf_counter()
    units = discover_units(source_ref(root, inventory).make())
    active = [u for u in units if not u.skip_reason]
    tasks = make_tasks("pmc", active, 16)
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(tasks, reshuffle=False) | beam.Map(len)
    proto = len(pipeline.to_runner_api().SerializeToString())
    return {
        "units": len(units),
        "plan_s": time.perf_counter() - started,
        "submit_s": None,
        "proto_bytes": proto,
        "rss_mb": peak_rss_mb(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], cwd: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"nothing listens on port {port}")


def child(kind: str, *args: str, timeout: float) -> dict | None:
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1_000_000)
    parser.add_argument("--baseline-versions", type=int, default=None)
    parser.add_argument("--baseline-timeout", type=float, default=600)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "today":
            root, inventory, out, job, pool = rest
            result = driver_today(Path(root), Path(inventory), Path(out), int(job), int(pool))
        else:
            result = driver_baseline(Path(rest[0]), Path(rest[1]))
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root, base = Path(tmp) / "bucket", Path(tmp) / "baseline_inventory"
        root.mkdir()
        inventory = Path(tmp) / "inventory"
        shards = generate_inventory(inventory, args.versions)
        baseline_versions = args.baseline_versions or args.versions
        if baseline_versions != args.versions:
            generate_inventory(base, baseline_versions)
        else:
            base = inventory
        job_port, pool_port = _free_port(), _free_port()
        job = _start(
            ["apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
            Path(tmp),
            job_port,
        )
        pool = _start(
            ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
            Path(tmp),
            pool_port,
        )
        try:
            today = child(
                "today",
                str(root),
                str(inventory),
                str(Path(tmp) / "out"),
                str(job_port),
                str(pool_port),
                timeout=600,
            )
        finally:
            for process in (pool, job):
                process.terminate()
        baseline = child("baseline", str(root), str(base), timeout=args.baseline_timeout)
    assert today is not None, "the planning job was not submitted within 10 minutes"
    print(f"inventory: {args.versions:,} article versions in {shards} CSV.gz shards (generated)")
    print(f"{'':<34} {'wall s':>8} {'peak RSS MB':>12} {'proto bytes':>14}")
    print(
        f"{'today: partitions + submit (portable)':<34} {today['submit_s']:>8.1f} "
        f"{today['rss_mb']:>12.0f} {today['proto_bytes']:>14,}"
    )
    print(
        f"  ({today['pieces']} pieces; graph built in {today['plan_s']:.1f} s; job {today['state']})"
    )
    if baseline is None:
        print(
            f"baseline: driver-side discovery of {baseline_versions:,} versions did not finish "
            f"in {args.baseline_timeout:.0f} s"
        )
    else:
        label = f"baseline: driver discovery ({baseline_versions:,})"
        print(
            f"{label:<34} {baseline['plan_s']:>8.1f} {baseline['rss_mb']:>12.0f} "
            f"{baseline['proto_bytes']:>14,}"
        )
        scale = args.versions / baseline_versions
        print(
            f"ratio baseline / today (time): {baseline['plan_s'] * scale / today['submit_s']:.0f}x"
            + (f" (baseline scaled x{scale:g} to {args.versions:,})" if scale != 1 else "")
        )
    ok = today["submit_s"] < 120 and today["rss_mb"] < 2048 and today["proto_bytes"] < 1_000_000
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
