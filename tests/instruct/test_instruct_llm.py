"""LLM generator against a real HTTP server on 127.0.0.1 (tests/instruct/openai_server.py):
retries on 429/5xx/timeouts/malformed bodies, cache (rerun = zero calls, crash loses nothing
answered), budget, usage and cost, and the API key never written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from curate.instruct.config import InstructConfig
from curate.instruct.generator import InstructionGenerator
from curate.instruct.llm import MissingAPIKey, load_prompt
from curate.stages import Failed, Rejected

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_server import MALFORMED_SHAPES, FakeOpenAIServer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def figure(i: int, marker: str = "") -> dict:
    return {
        "record_id": f"PMC{i}/F1/0",
        "split": "train",
        "source_uri": f"mem://PMC{i}.xml",
        "caption": f"Chest radiograph showing a right pleural effusion case {i} {marker}.".replace(
            " .", "."
        ),
        "inline_mentions": [f"Figure 1 of case {i} shows the effusion."],
        "figure_title": None,
        "image": b"\x89PNG-%d" % i,
        "image_sha256": f"{i:064x}",
        "image_format": "PNG",
        "modality": "X-ray",
        "entities": [],
    }


def config(server: FakeOpenAIServer, cache_dir: Path, **llm) -> InstructConfig:
    options = {
        "base_url": server.base_url,
        "api_key_env": None,
        "cache_dir": str(cache_dir),
        "timeout_s": 2.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.2,
        "concurrency": 4,
    }
    options.update(llm)
    return InstructConfig(generators=["llm"], llm=options)


def run(cfg: InstructConfig, records: list[dict]) -> tuple[list[list], dict]:
    generator = InstructionGenerator(cfg)
    generator.setup()
    try:
        return generator.generate_batch(records, []), generator.usage()
    finally:
        generator.teardown()


def only(outputs: list) -> object:
    assert len(outputs) == 1, outputs
    return outputs[0]


def test_conversation_with_provenance_and_request_parameters(tmp_path):
    with FakeOpenAIServer() as server:
        cfg = config(server, tmp_path, model="teacher-7b", temperature=0.2, max_tokens=300)
        results, usage = run(cfg, [figure(1)])
    sample = only(results[0])
    assert isinstance(sample, dict)
    assert sample["conversations"] == [
        {"from": "human", "value": "What does this image show?"},
        {
            "from": "gpt",
            "value": "The image shows: Chest radiograph showing a right pleural effusion case 1.",
        },
        {"from": "human", "value": "Is anything else notable?"},
        {
            "from": "gpt",
            "value": "The remaining structures look as expected for this kind of image.",
        },
    ]
    assert sample["generator"] == "llm" and sample["task"] == "llm.conversation"
    assert (
        sample["prompt_version"] == "llava_med_conversation.v1" and sample["model"] == "teacher-7b"
    )
    assert len(sample["cache_key"]) == 64 and sample["record_id"] == "PMC1/F1/0#llm.conversation.0"
    assert sample["source_schema"] == "figure_caption.v1"
    # the image is referenced by hash (include_image defaults to false), not copied
    assert (sample["image"], sample["image_sha256"]) == (None, f"{1:064x}")
    body = server.bodies[0]
    assert (
        body["model"] == "teacher-7b" and body["temperature"] == 0.2 and body["max_tokens"] == 300
    )
    prompt = load_prompt("llava_med_conversation.v1")
    assert len(body["messages"]) == 1 + 2 * len(prompt.examples) + 1
    assert len(prompt.examples) >= 5  # few-shot over several modalities
    assert body["messages"][-1]["content"] == (
        "Caption: Chest radiograph showing a right pleural effusion case 1.\n"
        "Mentions: Figure 1 of case 1 shows the effusion."
    )
    assert usage["requests"] == 1 and usage["answers"] == 1 and usage["cache_hits"] == 0


def test_faults_are_retried_and_rate_limit_waits_for_retry_after(tmp_path):
    faults = {
        "case 1 ": ["429"],
        "case 2 ": ["500", "500"],
        "case 3 ": ["slow"],
        "case 4 ": ["malformed"],
        "case 5 ": ["drop"],
    }
    with FakeOpenAIServer(faults, retry_after="0.4", slow_s=1.5) as server:
        # Retry-After is honoured up to backoff_max_s (a server asking for an hour would stall a build)
        cfg = config(server, tmp_path, timeout_s=0.5, concurrency=1, backoff_max_s=1.0)
        records = [figure(i) for i in range(6)]
        start = time.monotonic()
        results, usage = run(cfg, records[1:2])
        assert time.monotonic() - start >= 0.4  # Retry-After honoured
        results, usage = run(cfg, records)
        statuses = dict(server.statuses)
    assert all(isinstance(only(r), dict) for r in results)
    assert usage["cache_hits"] == 1  # case 1 answered by the first run
    assert usage["answers"] == 5
    assert usage["retries"] == 5  # 500 twice, slow once, malformed once, drop once
    assert usage["requests"] == 10
    assert statuses[429] == 1 and statuses[500] == 2


def test_persistent_faults_become_named_errors_without_losing_records(tmp_path):
    faults = {"case 0 ": ["500"] * 3, "case 1 ": ["slow"] * 3, "case 2 ": ["malformed"] * 3}
    with FakeOpenAIServer(faults, slow_s=0.6) as server:
        cfg = config(server, tmp_path, timeout_s=0.3, max_retries=2)
        results, usage = run(cfg, [figure(i) for i in range(4)])
        requests = server.requests
    reasons = [only(r).reason if isinstance(only(r), Failed) else "ok" for r in results]
    assert reasons == ["llm_server_error", "llm_timeout", "llm_malformed_response", "ok"]
    failure = only(results[0])
    assert failure.stage == "instruct.llm" and failure.record_id == "PMC0/F1/0"
    assert failure.source_uri == "mem://PMC0.xml"
    assert requests == 3 * 3 + 1 and usage["failed"] == 3


def test_replies_of_the_wrong_shape_are_malformed_and_retried(tmp_path):
    shapes = sorted(MALFORMED_SHAPES)
    # each case: one wrong-shaped reply, then a good one; the last case always wrong
    faults = {f"case {i} ": [shape] for i, shape in enumerate(shapes)}
    faults[f"case {len(shapes)} "] = [shapes[0]] * 3
    with FakeOpenAIServer(faults) as server:
        cfg = config(server, tmp_path, max_retries=2)
        results, usage = run(cfg, [figure(i) for i in range(len(shapes) + 1)])
    reasons = [only(r).reason if isinstance(only(r), Failed) else "ok" for r in results]
    assert reasons == ["ok"] * len(shapes) + ["llm_malformed_response"]
    assert usage["retries"] == len(shapes) + 2


def test_client_errors_are_not_retried(tmp_path):
    with FakeOpenAIServer() as server:
        cfg = config(server, tmp_path, base_url=server.base_url.replace("/v1", "/wrong"))
        results, usage = run(cfg, [figure(1)])
        assert server.requests == 0  # the server counts only the chat-completions route
    failure = only(results[0])
    assert isinstance(failure, Failed) and failure.reason == "llm_http_404"
    assert usage["requests"] == 1 and usage["retries"] == 0


def test_refusal_is_rejected_with_reason_and_cached(tmp_path):
    with FakeOpenAIServer({"case 7 ": ["refusal"]}) as server:
        cfg = config(server, tmp_path)
        results, _ = run(cfg, [figure(7)])
        rejected = only(results[0])
        assert isinstance(rejected, Rejected) and rejected.reason == "refusal"
        assert (
            rejected.record["source_record_id"] == "PMC7/F1/0" and rejected.record["image"] is None
        )
        results, usage = run(
            cfg, [figure(7)]
        )  # the refusal is an answer: a rerun does not pay again
        assert server.requests == 1 and usage["cache_hits"] == 1
        assert only(results[0]).reason == "refusal"


def test_rerun_makes_zero_calls_and_key_is_never_written(tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("CURATE_TEST_KEY", secret)
    with FakeOpenAIServer() as server:
        cfg = config(server, tmp_path / "cache", api_key_env="CURATE_TEST_KEY")
        records = [figure(i) for i in range(12)]
        first, usage1 = run(cfg, records)
        assert server.requests == 12 and usage1["answers"] == 12
        assert set(server.auth_headers) == {f"Bearer {secret}"}  # the key was used...
        second, usage2 = run(cfg, records)
        assert server.requests == 12  # ...and the rerun asked nothing
    assert usage2["cache_hits"] == 12 and usage2["requests"] == 0
    assert first == second
    written = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 12
    assert secret.encode() not in written  # ...but never written
    assert secret not in repr(first) and secret not in json.dumps(usage1)
    assert "CURATE_TEST_KEY" not in written.decode()


def test_missing_key_variable_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CURATE_ABSENT_KEY", raising=False)
    with FakeOpenAIServer() as server:
        cfg = config(server, tmp_path, api_key_env="CURATE_ABSENT_KEY")
        with pytest.raises(MissingAPIKey, match="CURATE_ABSENT_KEY"):
            InstructionGenerator(cfg).setup()


def test_budget_stops_run_then_rerun_asks_only_for_the_rest(tmp_path):
    with FakeOpenAIServer() as server:
        records = [figure(i) for i in range(10)]
        results, usage = run(config(server, tmp_path, budget_requests=4, concurrency=1), records)
        kinds = [type(only(r)).__name__ for r in results]
        assert kinds == ["dict"] * 4 + ["Failed"] * 6
        assert {only(r).reason for r in results[4:]} == {"budget_exceeded"}
        assert usage["budget_exceeded"] == 6 and usage["requests"] == 4
        results, usage = run(config(server, tmp_path), records)
        assert server.requests == 10  # 4 + 6: nothing answered was asked again
        assert usage["cache_hits"] == 4 and usage["answers"] == 6
        assert all(isinstance(only(r), dict) for r in results)


def test_token_budget_and_cost_estimate(tmp_path):
    with FakeOpenAIServer() as server:
        cfg = config(
            server, tmp_path, price_per_1k_input=0.5, price_per_1k_output=1.5, concurrency=1
        )
        _, usage = run(cfg, [figure(i) for i in range(3)])
        assert usage["prompt_tokens"] == server.prompt_tokens
        assert usage["completion_tokens"] == server.completion_tokens
        expected = server.prompt_tokens / 1000 * 0.5 + server.completion_tokens / 1000 * 1.5
        assert usage["estimated_cost"] == round(expected, 6)
        # a token budget smaller than one request's worst case refuses before sending anything
        before = server.requests
        results, usage = run(config(server, tmp_path / "other", budget_tokens=100), [figure(5)])
        assert server.requests == before and only(results[0]).reason == "budget_exceeded"


def test_concurrency_is_bounded(tmp_path):
    with FakeOpenAIServer(delay_s=0.05) as server:
        _, usage = run(config(server, tmp_path, concurrency=3), [figure(i) for i in range(12)])
        assert usage["answers"] == 12
        assert 2 <= server.max_inflight <= 3


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from curate.instruct.config import InstructConfig
    from curate.instruct.generator import InstructionGenerator
    sys.path.insert(0, {tests!r})
    from test_instruct_llm import figure
    cfg = InstructConfig.model_validate_json({cfg!r})
    generator = InstructionGenerator(cfg)
    generator.generate_batch([figure(i) for i in range({n})], [])
    print("finished", flush=True)
""")


def test_killed_run_loses_nothing_answered(tmp_path):
    n = 40
    with FakeOpenAIServer(delay_s=0.03) as server:
        cfg = config(server, tmp_path / "cache", concurrency=2)
        script = CRASH_SCRIPT.format(
            tests=str(Path(__file__).parent), cfg=cfg.model_dump_json(), n=n
        )
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        process = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while server.requests < 10 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
        answered = len(list((tmp_path / "cache").rglob("*.json")))
        served = server.requests
        assert 8 <= answered < n  # 10 received, at most 2 (the concurrency) still in flight
        # a request in flight at the kill may have been served but not yet cached: it is asked again
        assert served - answered <= 2
        results, usage = run(cfg, [figure(i) for i in range(n)])
        assert server.requests - served == n - answered  # only the unanswered records are asked
        assert usage["cache_hits"] == answered and usage["answers"] == n - answered
        assert all(isinstance(only(r), dict) for r in results)


def test_report_records_use_the_report_template(tmp_path):
    report = {
        "record_id": "iu/1/1/img",
        "split": "train",
        "findings": "Small left pleural effusion.",
        "impression": "Effusion.",
        "indication": None,
        "comparison": None,
        "image": b"png",
        "image_sha256": "e" * 64,
        "image_format": "PNG",
        "labels": [],
        "derived_labels": [],
        "entities": [],
    }
    no_image = {**report, "record_id": "iu/2/2/img", "image": None, "image_sha256": None}
    no_text = {**report, "record_id": "iu/3/3/img", "findings": "", "impression": ""}
    with FakeOpenAIServer() as server:
        results, usage = run(config(server, tmp_path), [report, no_image, no_text])
        assert server.bodies[0]["messages"][-1]["content"] == (
            "Report findings: Small left pleural effusion.\nReport impression: Effusion."
        )
    assert (
        isinstance(only(results[0]), dict)
        and only(results[0])["source_schema"] == "report_image.v1"
    )
    assert only(results[1]).reason == "no_image" and only(results[2]).reason == "no_source_text"
    assert usage["requests"] == 1
