"""A demo build with an OpenAI-compatible endpoint configured produces LLM conversations; a
build killed while answers arrive, then rerun, asks for no answer twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "instruct"))
from openai_server import FakeOpenAIServer  # noqa: E402

pytestmark = pytest.mark.slow


def command(out: Path, server: FakeOpenAIServer, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "curate.cli",
        "build",
        "--spec",
        "demo",
        "--out",
        str(out),
        "--running-mode",
        "in_memory",
        "--set",
        "instruct.generators=[templated, llm]",
        "--set",
        f"instruct.llm.base_url={server.base_url}",
        "--set",
        f"instruct.llm.cache_dir={cache}",
        "--set",
        "instruct.llm.concurrency=1",
        "--set",
        "instruct.llm.api_key_env=CURATE_TEST_LLM_KEY",
        "--set",
        "instruct.batch_size=1",
    ]


def test_llm_build_killed_and_rerun_makes_no_repeated_calls(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "CURATE_TEST_LLM_KEY": "sk-test-secret-value"}
    with FakeOpenAIServer(delay_s=0.4) as server:
        proc = subprocess.Popen(
            command(out, server, cache),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 240
        while server.requests < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert server.requests >= 4, "the build ended before the kill"
        answered_before = len(list(cache.rglob("*.json")))
        requests_before = server.requests
        assert answered_before >= 3

        server.delay_s = 0.0
        rerun = subprocess.run(command(out, server, cache), env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        manifest = json.loads((out / "manifest.json").read_text())
        kept = manifest["records"]["kept"]
        # The cache is content-addressed (records with the same caption share an answer).
        # Over both runs every answer was requested once; only a request in flight at the
        # kill may have been asked again.
        rerun_requests = server.requests - requests_before
        cached = len(list(cache.rglob("*.json")))
        assert rerun_requests in (cached - answered_before, cached - answered_before + 1), (
            rerun_requests,
            cached,
            answered_before,
            requests_before,
        )
        assert server.requests <= cached + 1

        again = subprocess.run(command(out, server, cache), env=env, capture_output=True, text=True)
        assert again.returncode == 0 and server.requests == requests_before + rerun_requests
        manifest = json.loads((out / "manifest.json").read_text())

    usage = manifest["instructions"]["usage"]
    assert usage["requests"] == 0 and usage["cache_hits"] == kept  # last run: all from cache
    assert kept == 13
    rows = pq.read_table(out / "instructions").to_pylist()
    llm_rows = [r for r in rows if r["generator"] == "llm"]
    assert (
        len({r["source_record_id"] for r in llm_rows})
        == kept - manifest["instructions"]["records_rejected"]
    )
    assert all(r["conversations"][0]["from"] == "human" for r in llm_rows)
    for path in list(out.rglob("*")) + list(cache.rglob("*")):
        if path.is_file():
            assert b"sk-test-secret-value" not in path.read_bytes(), path
