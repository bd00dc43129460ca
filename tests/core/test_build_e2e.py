"""End-to-end builds of the demo spec: exact accounting, read-back, resume after a kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from curate.build.phase1 import CRASH_AFTER_TASKS_ENV
from curate.cli import main
from curate.shards.loader import load_shards

pytestmark = pytest.mark.slow


CORPUS: dict[str, Any] = {}  # "root": the generated corpus folder, "facts": what it plants


def corpus_args() -> list[str]:
    # Every build reads one generated corpus, so source URIs (and so rejects/errors) are equal.
    return [
        f"--source=pmc_{layout}={CORPUS['root'] / layout}"
        for layout in ("cloud", "legacy", "folder")
    ]


def build(out: Path, *extra: str) -> int:
    return main(
        [
            "build",
            "--spec",
            "demo",
            "--out",
            str(out),
            "--running-mode",
            "in_memory",
            *corpus_args(),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.demo.pmc import generate_pmc_demo

    root = tmp_path_factory.mktemp("corpus") / "pmc"
    CORPUS["facts"] = generate_pmc_demo(str(root))
    CORPUS["root"] = root
    out = tmp_path_factory.mktemp("demo") / "out"
    assert build(out) == 0
    return out


@pytest.fixture(scope="module")
def multi_processing_out(demo_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same build with the default runner: parallel workers deliver the tasks in another
    order than the in-memory runner does."""
    out = tmp_path_factory.mktemp("multi_processing") / "out"
    args = ["build", "--spec", "demo", "--out", str(out), "--workers", "2", *corpus_args()]
    assert main(args) == 0
    assert manifest(out)["runner"]["running_mode"] == "multi_processing"
    return out


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def outputs(m: dict) -> dict[str, str]:
    """Each written file (shards, rejects, data card) by path, with its sha256."""
    return {f["path"]: f["sha256"] for f in m["files"]}


def test_demo_spec_builds_from_generated_corpus(tmp_path: Path) -> None:
    # `demo:` paths generate the corpus inside the work folder: no download, any directory.
    out = tmp_path / "plain"
    assert main(["build", "--spec", "demo", "--out", str(out), "--running-mode", "in_memory"]) == 0
    assert manifest(out)["records"]["kept"] == 13
    assert (out / "_work" / "demo_input" / "pmc" / ".generated.json").is_file()


def test_demo_accounting_is_exact(demo_out: Path) -> None:
    m = manifest(demo_out)
    facts = CORPUS["facts"]
    assert m["status"] == "ok"
    assert all(i["holds"] for i in m["identities"]), m["identities"]
    assert m["units"] == {"discovered": 28, "skipped": 6, "read": 14, "failed": 8}
    assert m["records"] == {"candidates": 28, "kept": 13, "rejected": 11, "errors": 4}
    assert m["reject_reasons"] == {
        "article_type_excluded:correction": 1,
        "duplicate_caption_image": 1,
        "duplicate_image": 1,
        "image_missing": 1,
        "license_not_allowed:noncommercial": 5,
        # near duplicates: the two planted re-encoded/resized copies; the two graphics of a
        # two-panel figure share one caption but are never duplicates of each other
        "near_duplicate_image": 2,
    }
    assert m["error_reasons"] == {
        "empty_input": 1,
        "hostile_xml": 2,
        "malformed_xml": 1,
        "not_jats": 1,
        "not_utf8": 1,
        "package_without_xml": 1,
        "truncated_archive": 1,
        "unreadable_image": 1,
        "unsafe_archive_member": 3,
    }
    from collections import Counter

    skipped = sum((Counter(src["skipped"]) for src in m["inputs"].values()), Counter())
    assert skipped == {
        "not_open_access": 1,
        "retracted": 1,
        "superseded_version": 3,
        "package_absent": 1,
    }
    assert sum(m["splits"].values()) == 13
    assert m["spec"]["sha256"] and m["schema"]["name"] == "figure_caption"
    assert m["versions"]["apache-beam"].startswith("2.")
    # The planted exact duplicates: one of each pair kept, the other rejected pointing at it.
    import pyarrow.parquet as pq

    rejects = pq.read_table(demo_out / "rejects").to_pylist()
    dup = {r["record_id"]: r for r in rejects if r["reason"].startswith("duplicate")}
    for pair in facts["exact_duplicate_images"] + facts["exact_duplicate_pairs"]:
        kept, dropped = sorted(pair)
        assert dup[dropped]["duplicate_of"] == kept
    near = {r["record_id"]: r for r in rejects if r["reason"] == "near_duplicate_image"}
    for original, copy in facts["near_duplicates"]:
        assert near[copy]["duplicate_of"] == original
    # The embedding pass leaves its sidecars for re-tuning thresholds without re-embedding.
    sidecar = pq.read_table(demo_out / "attributes" / "embeddings_text.parquet")
    assert sidecar.num_rows == 17 and set(sidecar.column_names) >= {
        "record_id",
        "vector",
        "model_id",
    }


def test_shards_read_back_with_schema_and_no_article_in_two_splits(demo_out: Path) -> None:
    splits_of = defaultdict(set)
    total = 0
    for split in ("train", "validation", "test"):
        ds = load_shards(demo_out, split=split)
        rows = list(ds)
        assert len(rows) == len(ds) == manifest(demo_out)["splits"][split]
        for row in rows:
            total += 1
            splits_of[row["pmcid"]].add(split)
            assert row["split"] == split
            assert row["image"] and row["image_sha256"] and row["license_family"] == "commercial"
    assert total == 13
    assert all(len(s) == 1 for s in splits_of.values())


def test_killed_build_resumes_to_identical_shards(
    demo_out: Path, multi_processing_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    env = {**os.environ, CRASH_AFTER_TASKS_ENV: "3"}
    cmd = [
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
        *corpus_args(),
    ]
    crashed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    done = sorted((out / "_work" / "tasks").glob("*/done.json"))
    assert len(done) == 3 and not (out / "manifest.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}

    assert build(out) == 0
    m = manifest(out)
    assert m["tasks"] == {"total": 8, "resumed": 3, "ran": 5}
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # finished tasks were not redone

    assert outputs(m) == outputs(manifest(demo_out))
    assert m["records"] == manifest(demo_out)["records"]
    # The resumed build (3 tasks from before the kill, 5 after, in-memory) also equals a build
    # whose tasks arrived in multi-processing order: the result depends on no delivery order.
    assert outputs(m) == outputs(manifest(multi_processing_out))
    assert m["records"] == manifest(multi_processing_out)["records"]


def test_rerun_of_finished_build_redoes_nothing(demo_out: Path) -> None:
    before = manifest(demo_out)
    assert build(demo_out) == 0
    after = manifest(demo_out)
    assert after["tasks"] == {"total": 8, "resumed": 8, "ran": 0}
    assert [f["sha256"] for f in after["files"]] == [f["sha256"] for f in before["files"]]


def test_other_spec_in_same_out_dir_is_refused(
    demo_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(demo_out, "--set", "split.seed=99") == 2
    assert "another spec" in capsys.readouterr().err


def test_default_multiprocessing_runner_gives_same_shards(
    demo_out: Path, multi_processing_out: Path
) -> None:
    assert outputs(manifest(multi_processing_out)) == outputs(manifest(demo_out))


def test_error_fraction_limit_fails_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(tmp_path / "strict", "--set", "max_error_fraction=0.01") == 1
    assert "exceeds max_error_fraction" in capsys.readouterr().err
    assert manifest(tmp_path / "strict")["status"] == "failed"


def test_manifest_digests_match_the_files(demo_out: Path) -> None:
    # Writers record each file's sha256 as they write it; the manifest must agree with the bytes.
    import hashlib

    files = manifest(demo_out)["files"]
    assert {f["path"].split("/")[0] for f in files} >= {
        "shards",
        "rejects",
        "errors",
        "instructions",
    }
    for entry in files:
        data = (demo_out / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), entry["path"]
    assert list((demo_out / "_work" / "digests").glob("shards__*.json"))


def test_data_card_summarises_the_build(demo_out: Path) -> None:
    card = (demo_out / "DATA_CARD.md").read_text()
    front_matter, _, body = card.removeprefix("---\n").partition("\n---\n")
    assert "license:" in front_matter and "size_categories:" in front_matter
    assert body.lstrip().startswith("# Data card: demo")
    assert "28 candidate records: **13 kept**, 11 rejected with a reason, 4 errors" in card
    assert "| license_not_allowed:noncommercial | 5 |" in card
    assert "| near_duplicate_image | 2 |" in card
    assert "| CC BY 4.0 | 13 |" in card
    assert (
        "### Most frequent linked concepts" in card and "| present | absent | uncertain |" in card
    )


def test_instruction_shards_stream_and_cli_inspect(
    demo_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = manifest(demo_out)
    assert m["tables"]["instructions"]["schema"]["name"] == "instruction"
    rows = list(
        load_shards(
            demo_out,
            split="train",
            table="instructions",
            columns=["task", "conversations", "split"],
        )
    )
    assert len(rows) == m["instruction_splits"]["train"] and all(
        r["split"] == "train" for r in rows
    )
    assert all(r["conversations"][0]["from"] == "human" for r in rows)
    assert main(["inspect", str(demo_out), "--rows", "1", "--columns", "record_id", "caption"]) == 0
    out = capsys.readouterr().out
    assert "accounting identities: all hold" in out and '"record_id": "PMC' in out
