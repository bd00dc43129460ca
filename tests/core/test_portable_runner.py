"""The portable path a Flink/Spark/Dataflow user takes, checked here without a cluster: Beam's
Python job service plus an EXTERNAL worker pool started in another working directory, with the
demo built through `PortableRunner`. Its shards must equal the default local runner's, byte for
byte, and its manifest counts too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from curate.cli import main

pytestmark = pytest.mark.slow

COUNTED = ("records", "units", "splits", "reject_reasons", "error_reasons", "identities", "tasks")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _start(args: list[str], cwd: Path, port: int, log: Path) -> subprocess.Popen:
    # The venv's python first on PATH: the worker pool starts SDK workers with `python`.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_for_port(port, process)
    return process


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    elsewhere = tmp_path_factory.mktemp("worker_pool_cwd")
    job_port, pool_port = _free_port(), _free_port()
    job = _start(
        ["apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
        elsewhere,
        job_port,
        elsewhere / "job_service.log",
    )
    pool = _start(
        ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
        elsewhere,
        pool_port,
        elsewhere / "worker_pool.log",
    )
    try:
        yield job_port, pool_port
    finally:
        for process in (pool, job):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_portable_runner_with_external_workers_equals_local(
    portable_services: tuple[int, int], tmp_path: Path
) -> None:
    job_port, pool_port = portable_services
    out = (tmp_path / "out").resolve()  # the workers run elsewhere: absolute paths only
    portable = [
        "--runner",
        "PortableRunner",
        f"--job_endpoint=localhost:{job_port}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{pool_port}",
    ]
    assert main(["build", "--spec", "demo", "--out", str(out), "--fresh", *portable]) == 0
    remote = _manifest(out)
    # The same --out, so input paths (generated under it) and so shard bytes can match.
    assert main(["build", "--spec", "demo", "--out", str(out), "--fresh"]) == 0
    local = _manifest(out)
    assert remote["runner"]["runner"] == "PortableRunner"
    assert local["runner"]["runner"] == "FnApiRunner"
    assert {k: remote[k] for k in COUNTED} == {k: local[k] for k in COUNTED}
    shards = {f["path"]: f["sha256"] for f in local["files"] if f["path"].startswith("shards/")}
    assert shards, "the demo keeps records"
    assert {f["path"]: f["sha256"] for f in remote["files"] if f["path"] in shards} == shards
    assert [f["path"] for f in remote["files"]] == [f["path"] for f in local["files"]]
    assert {f["path"]: f["sha256"] for f in remote["files"]} == {
        f["path"]: f["sha256"] for f in local["files"]
    }
