"""Decontamination of short questions (with their answers), every PathVQA release format, and
the summary the data card reads (records, not record x item pairs)."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curate.build.manifest import benchmark_matches
from curate.decontaminate.benchmarks import BenchmarkIndex, build_benchmark, find_leaks
from curate.decontaminate.config import DecontamConfig
from curate.decontaminate.loaders import load_pathvqa


def _image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    grid = (rng.random((8, 8)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grid).resize((128, 128), Image.Resampling.BICUBIC).save(buf, "PNG")
    return buf.getvalue()


def _vqa_rad(root, rows) -> None:
    root.mkdir(parents=True)
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(rows))


def test_short_questions_leak_only_with_their_answer(tmp_path):
    _vqa_rad(
        tmp_path / "rad",
        [
            {"qid": 1, "image_name": "a.jpg", "question": "is this normal?", "answer": "no"},
            {
                "qid": 2,
                "image_name": "b.jpg",
                "question": "where is the mass?",
                "answer": "left kidney",
            },
        ],
    )
    build_benchmark("vqa_rad", "vqa_rad", tmp_path / "rad", tmp_path / "index")
    index = BenchmarkIndex.load(tmp_path / "index", DecontamConfig())
    records = [
        {"record_id": "qa", "caption": "Question: Is this normal? Answer: No."},
        {"record_id": "qa-2", "caption": "Where is the mass? It sits in the left kidney."},
        {"record_id": "q-only", "caption": "Is this normal? The study was repeated."},
        {"record_id": "wrong-answer", "caption": "Is this normal? yes it is"},
        {
            "record_id": "answer-far",
            "caption": "Where is the mass? " + "word " * 20 + "left kidney",
        },
        {"record_id": "clean", "caption": "A normal chest radiograph with no focal lesion."},
    ]
    leaks = find_leaks(records, index)
    assert sorted((x.record_id, x.item_id) for x in leaks) == [
        ("qa", "VQA_RAD Dataset Public:1"),
        ("qa-2", "VQA_RAD Dataset Public:2"),
    ]
    off = BenchmarkIndex.load(tmp_path / "index", DecontamConfig(answer_window=0))
    assert find_leaks(records, off) == []


def test_pathvqa_loads_in_every_release_format(tmp_path):
    root = tmp_path / "pvqa"
    (root / "images" / "test").mkdir(parents=True)
    (root / "images" / "test" / "test_0001.jpg").write_bytes(_image(1))
    (root / "qas").mkdir()
    lxmert = [
        {
            "answer_type": "other",
            "img_id": "test_0001",
            "label": {"lymphocytes": 1},
            "question_id": 7,
            "question_type": "what",
            "sent": "What is present in the lamina propria?",
        }
    ]
    (root / "qas" / "test_vqa.json").write_text(json.dumps(lxmert))
    (root / "qas" / "train_vqa.pkl").write_bytes(pickle.dumps([dict(lxmert[0], question_id=8)]))
    (root / "qas" / "trainval_ans2label.pkl").write_bytes(pickle.dumps({"yes": 0}))
    table = pa.table(
        {
            "image": [{"bytes": _image(2), "path": "x.jpg"}],
            "question": ["is there necrosis?"],
            "answer": ["yes"],
        }
    )
    (root / "data").mkdir()
    pq.write_table(table, root / "data" / "test-00000-of-00001.parquet")
    items = list(load_pathvqa(root))
    assert [(i.item_id, i.texts, i.answer) for i in items] == [
        ("train_vqa:8", ("What is present in the lamina propria?",), "lymphocytes"),
        ("test_vqa:7", ("What is present in the lamina propria?",), "lymphocytes"),
        ("test-00000-of-00001:0", ("is there necrosis?",), "yes"),
    ]
    assert items[0].image_file and items[0].image_file.endswith("test_0001.jpg")
    assert items[2].image_bytes
    summary = build_benchmark("pathvqa", "pathvqa", root, tmp_path / "index")
    assert (summary["items"], summary["images"], summary["missing_images"]) == (3, 2, 0)


def test_card_summary_counts_records_not_pairs(tmp_path):
    rows = [
        {"record_id": "r1", "benchmark": "slake", "item_id": "a"},
        {"record_id": "r1", "benchmark": "slake", "item_id": "b"},
        {"record_id": "r1", "benchmark": "vqa_rad", "item_id": "c"},
        {"record_id": "r2", "benchmark": "slake", "item_id": "a"},
    ]
    folder = tmp_path / "attributes"
    folder.mkdir()
    (folder / "benchmark_matches.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = benchmark_matches(str(tmp_path))
    assert summary is not None
    assert summary["total"] == 4
    assert summary["records_removed"] == 2
    assert summary["records_by_benchmark"] == {"slake": 2, "vqa_rad": 1}


def test_a_leak_names_the_reason_of_a_record_that_is_also_a_duplicate():
    from curate.build.phase2 import first_by_priority

    decisions = [
        ("dedup:near", "near_duplicate_image", "PMC1/F1/0"),
        ("decontaminate", "benchmark_leak:vqa_rad", "vqa_rad:test:3"),
        ("dedup:exact_image", "duplicate_image", "PMC2/F1/0"),
    ]
    assert first_by_priority(decisions)[0] == "decontaminate"
