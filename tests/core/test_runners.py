"""Runner choice: paths as the workers see them, and a launcher whose Beam matches the image."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from curate.errors import SpecError
from curate.runners import WORKER_BEAM_VERSION, RunnerChoice

REPO = Path(__file__).resolve().parents[2]


def test_relative_paths_become_absolute_for_a_worker_pool_elsewhere(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    runner = RunnerChoice(runner="PortableRunner")
    assert runner.resolve_paths({"--out": "out", "pmc": "s3://b/pmc", "demo": "demo:pmc"}) == {
        "--out": str(tmp_path / "out"),
        "pmc": "s3://b/pmc",
        "demo": "demo:pmc",
    }


def test_dataflow_refuses_local_paths_with_the_reason() -> None:
    runner = RunnerChoice(runner="DataflowRunner")
    assert runner.resolve_paths({"--out": "gs://b/out"}) == {"--out": "gs://b/out"}
    with pytest.raises(SpecError, match=r"--out is the local path '/data/out'.*gs://"):
        runner.resolve_paths({"--out": "/data/out"})


def test_non_local_submission_needs_the_image_beam_version() -> None:
    RunnerChoice(runner="local").check_beam_version("2.60.0")  # local: whatever is installed
    RunnerChoice(runner="DataflowRunner").check_beam_version(WORKER_BEAM_VERSION)
    with pytest.raises(SpecError, match="apache-beam 2.76.0, the worker image has"):
        RunnerChoice(runner="FlinkRunner").check_beam_version("2.76.0")


def test_constraints_dockerfile_and_launcher_pin_one_beam() -> None:
    constraints = (REPO / "constraints.txt").read_text()
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert f"apache-beam=={WORKER_BEAM_VERSION}" in constraints.splitlines()
    assert re.search(
        rf"FROM apache/beam_python3\.11_sdk:{re.escape(WORKER_BEAM_VERSION)}\b", dockerfile
    )
    assert "-c constraints.txt" in dockerfile
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()
