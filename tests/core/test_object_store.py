"""Object stores end to end, against a real S3-protocol server (moto's standalone server) on
127.0.0.1: a cloud-layout PMC corpus read from `s3://`, shards written to `s3://`, a killed
and resumed build there, `--fresh` there, and `load_shards("s3://...")` streaming the result.
Beam's S3 filesystem and pyarrow's both honour `AWS_ENDPOINT_URL`, as a user's would."""

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

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

pytestmark = pytest.mark.slow

BUCKET = "curate-test"
SPEC = """
name: s3_cloud
schema: figure_caption.v1
sources:
  - {kind: pmc, name: pmc, path: PLACEHOLDER, options: {layout: cloud}}
rules: [pmc_figures.v1]
enrich: {modality: true}
dedup: {exact: {image_sha256: true, caption_image: true}}
split: {seed: 0, ratios: {train: 0.7, validation: 0.15, test: 0.15}}
output: {shard_rows: 4, row_group_rows: 2}
work: {units_per_task: 2}
max_error_fraction: 0.5
"""
COUNTED = ("records", "units", "splits", "reject_reasons", "error_reasons", "identities")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        server.wait(timeout=20)


def _upload(folder: Path, prefix: str) -> int:
    client = boto3.client("s3")
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
            count += 1
    return count


def _curate(*args: str, env: dict[str, str], extra_env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "curate.cli", *args],
        env={**os.environ, **env, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _read_json(uri: str) -> dict:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


@pytest.fixture(scope="module")
def corpus(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from curate.demo.pmc import generate_pmc_demo

    root = tmp_path_factory.mktemp("pmc")
    generate_pmc_demo(str(root))
    assert _upload(root / "cloud", "pmc/cloud") > 10
    spec = root / "s3_cloud.yaml"
    spec.write_text(SPEC.replace("PLACEHOLDER", f"s3://{BUCKET}/pmc/cloud"))
    local_spec = root / "local_cloud.yaml"
    local_spec.write_text(SPEC.replace("PLACEHOLDER", str(root / "cloud")))
    return {"spec": str(spec), "local_spec": str(local_spec), "root": str(root)}


def test_build_reads_and_writes_s3_like_a_local_build(
    s3_env: dict[str, str], corpus: dict[str, str], tmp_path: Path
) -> None:
    out = f"s3://{BUCKET}/builds/plain"
    done = _curate("build", "--spec", corpus["spec"], "--out", out, env=s3_env)
    assert done.returncode == 0, done.stderr[-2000:]
    local_out = tmp_path / "local"
    local = _curate("build", "--spec", corpus["local_spec"], "--out", str(local_out), env=s3_env)
    assert local.returncode == 0, local.stderr[-2000:]
    remote_manifest = _read_json(f"{out}/manifest.json")
    local_manifest = json.loads((local_out / "manifest.json").read_text())
    assert {k: remote_manifest[k] for k in COUNTED} == {k: local_manifest[k] for k in COUNTED}
    assert all(i["holds"] for i in remote_manifest["identities"])
    # Records carry source-relative URIs, so the shards are the same bytes wherever input and
    # output live.
    shards = {
        f["path"]: f["sha256"] for f in local_manifest["files"] if f["path"].startswith("shards/")
    }
    assert shards
    assert {
        f["path"]: f["sha256"] for f in remote_manifest["files"] if f["path"].startswith("shards/")
    } == shards

    from curate.shards.loader import load_shards

    remote_rows = sorted(
        (r["record_id"], r["image_sha256"])
        for r in load_shards(out, split="train", columns=["record_id", "image_sha256"])
    )
    local_rows = sorted(
        (r["record_id"], r["image_sha256"])
        for r in load_shards(str(local_out), split="train", columns=["record_id", "image_sha256"])
    )
    assert remote_rows == local_rows and remote_rows


def test_killed_build_on_s3_resumes_to_the_same_bytes_and_fresh_starts_over(
    s3_env: dict[str, str], corpus: dict[str, str]
) -> None:
    from curate.build.phase1 import CRASH_AFTER_TASKS_ENV

    whole = f"s3://{BUCKET}/builds/whole"
    killed = f"s3://{BUCKET}/builds/killed"
    assert (
        _curate(
            "build",
            "--spec",
            corpus["spec"],
            "--out",
            whole,
            "--running-mode",
            "in_memory",
            env=s3_env,
        ).returncode
        == 0
    )
    crash = _curate(
        "build",
        "--spec",
        corpus["spec"],
        "--out",
        killed,
        "--running-mode",
        "in_memory",
        env=s3_env,
        extra_env={CRASH_AFTER_TASKS_ENV: "2"},
    )
    assert crash.returncode == 137
    resumed = _curate(
        "build",
        "--spec",
        corpus["spec"],
        "--out",
        killed,
        "--running-mode",
        "in_memory",
        env=s3_env,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    first, second = _read_json(f"{whole}/manifest.json"), _read_json(f"{killed}/manifest.json")
    assert second["tasks"]["resumed"] == 2
    assert {f["path"]: f["sha256"] for f in second["files"]} == {
        f["path"]: f["sha256"] for f in first["files"]
    }
    # --fresh on an object store: earlier tasks are not resumed, and an object the build did
    # not write stays.
    boto3.client("s3").put_object(Bucket=BUCKET, Key="builds/killed/notes.txt", Body=b"mine")
    fresh = _curate(
        "build",
        "--spec",
        corpus["spec"],
        "--out",
        killed,
        "--fresh",
        "--running-mode",
        "in_memory",
        env=s3_env,
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert _read_json(f"{killed}/manifest.json")["tasks"]["resumed"] == 0
    body = (
        boto3.client("s3").get_object(Bucket=BUCKET, Key="builds/killed/notes.txt")["Body"].read()
    )
    assert body == b"mine"


def test_a_kb_folder_on_s3_is_fetched_once_into_the_cache(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    from curate.enrich.link.store import resolve_kb
    from curate.runners import RunnerChoice

    RunnerChoice().configure_filesystems()  # as the driver does; Beam does it on workers
    kb = tmp_path / "kb"
    (kb / "index").mkdir(parents=True)
    (kb / "manifest.json").write_text(json.dumps({"kb_id": "small", "kb_sha256": "a" * 64}))
    (kb / "kb.jsonl").write_text('{"cui": "C1"}\n')
    (kb / "index" / "ann.bin").write_bytes(bytes(range(256)))
    _upload(kb, "kbs/small")
    uri, cache = f"s3://{BUCKET}/kbs/small", tmp_path / "cache"
    local = resolve_kb(uri, cache)
    copied = {
        p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()
    }
    original = {p.relative_to(kb).as_posix(): p.read_bytes() for p in kb.rglob("*") if p.is_file()}
    assert copied == original
    stamp = (local / "kb.jsonl").stat().st_mtime_ns
    assert resolve_kb(uri, cache) == local and (local / "kb.jsonl").stat().st_mtime_ns == stamp
    # A KB replaced under the same URI (another sha256 in its manifest) is fetched again.
    (kb / "manifest.json").write_text(json.dumps({"kb_id": "small", "kb_sha256": "b" * 64}))
    _upload(kb, "kbs/small")
    assert resolve_kb(uri, cache) != local


def test_a_model_folder_on_s3_loads_from_a_local_copy(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curate.embed.models import load_tower, minilm_path
    from curate.runners import RunnerChoice

    RunnerChoice().configure_filesystems()
    monkeypatch.setenv("CURATE_MODEL_CACHE", str(tmp_path / "models"))
    _upload(minilm_path(), "models/minilm")
    tower = load_tower(f"minilm:s3://{BUCKET}/models/minilm", "text")
    local = load_tower("minilm", "text")
    vectors, _ = tower.embed(["a chest radiograph", "an axial CT slice"])
    expected, _ = local.embed(["a chest radiograph", "an axial CT slice"])
    assert vectors.shape == expected.shape and abs(vectors - expected).max() < 1e-6
    assert (
        tower.model_id == f"minilm:s3://{BUCKET}/models/minilm"
        and len(list((tmp_path / "models").iterdir())) == 1
    )


def test_a_prefix_of_user_objects_is_refused_and_untouched_on_s3(
    s3_env: dict[str, str], corpus: dict[str, str], tmp_path: Path
) -> None:
    """Ownership holds on object stores too: --out (with --fresh) over someone's objects."""
    client = boto3.client("s3")
    keys = ["users/thesis.tex", "users/errors/notes.txt", "users/sub/data.csv"]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"mine")
    done = _curate(
        "build", "--spec", corpus["spec"], "--out", f"s3://{BUCKET}/users", "--fresh", env=s3_env
    )
    assert done.returncode == 2
    assert "holds files that no curate build wrote" in done.stderr
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="users/")
    assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(keys)
    # a source below --out is refused before anything is written or removed
    inside = _curate("build", "--spec", corpus["spec"], "--out", f"s3://{BUCKET}/pmc", env=s3_env)
    assert inside.returncode == 2 and "lies inside --out" in inside.stderr
