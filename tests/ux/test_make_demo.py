"""`make demo` as a new user runs it: quiet (under 80 lines, setup included), with progress
lines, the MLLM beside its baselines, and the data card's path last (issue: a tool people
enjoy). Runs the Makefile itself, into a temporary DEMO_OUT, with the venv `make test` set up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_demo_is_short_shows_progress_and_ends_with_the_card(tmp_path: Path) -> None:
    if not (REPO / ".venv" / ".installed").exists():
        pytest.skip("needs the venv `make setup` makes (make test and CI have it)")
    out = tmp_path / "demo_out"
    # as from a shell: not a sub-make of `make test` (which would print "make[1]: Entering
    # directory" lines), no pytest or inductor variables
    skip = ("PYTEST_", "TORCHINDUCTOR_", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    # progress lines come at most every CURATE_PROGRESS_INTERVAL seconds (15 by default): a fast
    # machine finishes every demo's phase 1 inside 15 s and prints none, so the test asks for 4
    env["CURATE_PROGRESS_INTERVAL"] = "4"
    done = subprocess.run(
        ["make", "demo", f"DEMO_OUT={out}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows it
        text=True,
        timeout=1800,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, "\n".join(lines[-40:])
    assert len(lines) < 80, f"make demo printed {len(lines)} lines:\n" + "\n".join(lines)
    assert any(": phase 1:" in line for line in lines), "no progress line"
    assert any(line.lstrip().startswith("zeroed_image") for line in lines), "no MLLM baselines"
    assert lines[-1].startswith(f"data card: {out}/pmc/DATA_CARD.html")
    assert (out / "pmc" / "DATA_CARD.html").is_file()
    assert not any("Traceback" in line for line in lines)
