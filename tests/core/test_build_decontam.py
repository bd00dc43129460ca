"""A build with a benchmark index rejects the planted leaks (an image, a copied question and a
paraphrased one) as `benchmark_leak:<name>` and the manifest lists the matches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate.cli import main
from curate.demo.pmc import generate_pmc_demo

pytestmark = pytest.mark.slow

LEAKED_IMAGE_RECORD = "PMC9200001/f1-F1/0"  # folder/f1-g001.png
LEAKED_TEXT_RECORD = "PMC9000002/c2-F1/0"  # the head CT caption
LEAKED_PARAPHRASE_RECORD = "PMC9000003/c3-F1/0"  # the widefield retinal detachment caption


def test_planted_benchmark_leaks_are_rejected(tmp_path: Path) -> None:
    corpus = tmp_path / "pmc"
    generate_pmc_demo(str(corpus))
    bench = tmp_path / "vqa_rad"
    (bench / "images").mkdir(parents=True)
    # Leak 1: a benchmark image that is a re-encoded copy of a training figure.
    with Image.open(corpus / "folder" / "f1-g001.png") as img:
        img.convert("RGB").save(bench / "images" / "synpic100.jpg", quality=80)
    # An unrelated benchmark image and question that must not match anything.
    noise = np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8)
    Image.fromarray(noise).save(bench / "images" / "synpic200.png")
    # Leak 2: a question that copies a long stretch of a training caption.
    items = [
        {
            "qid": 1,
            "image_name": "synpic100.jpg",
            "question": "Is there a lesion in the brain?",
            "answer": "yes",
        },
        {
            "qid": 2,
            "image_name": "synpic200.png",
            "question": "Does this non-contrast head CT showing an acute right subdural haematoma with midline shift indicate surgery?",
            "answer": "yes",
        },
        {
            "qid": 3,
            "image_name": "synpic200.png",
            "question": "What organ system is imaged in this study of the knee?",
            "answer": "joint",
        },
        {
            # Leak 3: the retina caption reworded (no 13 words in a row shared): found only by
            # the semantic match of the default rules (dedup/decontam.v2)
            "qid": 4,
            "image_name": "synpic200.png",
            "question": "Is there a superotemporal retinal detachment with a horseshoe tear in "
            "this widefield picture of the left eye?",
            "answer": "yes",
        },
    ]
    (bench / "VQA_RAD Dataset Public.json").write_text(json.dumps(items))
    index = tmp_path / "index"
    assert (
        main(
            [
                "benchmark",
                "add",
                "--name",
                "vqa_rad",
                "--format",
                "vqa_rad",
                "--path",
                str(bench),
                "--index",
                str(index),
            ]
        )
        == 0
    )

    out = tmp_path / "out"
    sources = [
        f"--source=pmc_{layout}={corpus / layout}" for layout in ("cloud", "legacy", "folder")
    ]
    rc = main(
        [
            "build",
            "--spec",
            "demo",
            "--out",
            str(out),
            "--running-mode",
            "in_memory",
            *sources,
            "--set",
            f"dedup.decontam={{enabled: true, index: '{index}'}}",
        ]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(i["holds"] for i in manifest["identities"])
    rejects = {r["record_id"]: r for r in pq.read_table(out / "rejects").to_pylist()}
    leaks = {rid: r for rid, r in rejects.items() if r["reason"] == "benchmark_leak:vqa_rad"}
    assert set(leaks) == {LEAKED_IMAGE_RECORD, LEAKED_TEXT_RECORD, LEAKED_PARAPHRASE_RECORD}
    assert leaks[LEAKED_IMAGE_RECORD]["duplicate_of"].startswith("vqa_rad:")
    assert leaks[LEAKED_PARAPHRASE_RECORD]["duplicate_of"] == "vqa_rad:VQA_RAD Dataset Public:4"
    assert manifest["reject_reasons"]["benchmark_leak:vqa_rad"] == 3
    matches = manifest["benchmark_matches"]
    assert matches["by_benchmark"] == {"vqa_rad": matches["total"]} and matches["total"] >= 3
    assert matches["records_removed"] == 3
    assert {m["record_id"] for m in matches["first"]} == set(leaks)
    kinds = {(m["record_id"], m["match"]) for m in matches["first"]}
    assert (LEAKED_PARAPHRASE_RECORD, "semantic") in kinds
    assert (LEAKED_TEXT_RECORD, "verbatim") in kinds
    (paraphrase,) = [m for m in matches["first"] if m["record_id"] == LEAKED_PARAPHRASE_RECORD]
    assert paraphrase["cosine"] >= 0.8 and "paraphrase" in paraphrase["detail"]
    kept = {
        r["record_id"] for r in pq.read_table(out / "shards", columns=["record_id"]).to_pylist()
    }
    assert not kept & set(leaks)
