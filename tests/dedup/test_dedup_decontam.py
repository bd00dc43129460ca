"""Decontamination: fake benchmark sets in each released file format, the index, and matches.

Formats follow the public releases (see curate.decontaminate.benchmarks): VQA-RAD's JSON list with
`image_name`; SLAKE's train/validate/test.json with `img_name` under imgs/; PathVQA's
qas/<split>/<split>_qa.pkl with images/<split>/<image>.jpg; PMC-VQA's CSV with `Figure_path`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from curate.decontaminate.beam import Decontaminate
from curate.decontaminate.benchmarks import BenchmarkIndex, build_benchmark, find_leaks, first_leak
from curate.decontaminate.cli import register
from curate.decontaminate.config import DecontamConfig
from curate.errors import MalformedMetadata, MissingFile

QUESTION = "what abnormality is seen in the right lower lobe of the lung on this chest radiograph"


def _image(seed: int, size=(200, 160), quality: int = 92) -> bytes:
    rng = np.random.default_rng(seed)
    grid = rng.normal(size=(8, 8, 3))
    grid = ((grid - grid.min()) / np.ptp(grid) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grid).resize((200, 160), Image.Resampling.BICUBIC).resize(size).save(
        buf, "JPEG", quality=quality
    )
    return buf.getvalue()


def make_vqa_rad(root):
    (root / "VQA_RAD Image Folder").mkdir(parents=True)
    (root / "VQA_RAD Image Folder" / "synpic100.jpg").write_bytes(_image(10))
    rows = [
        {
            "qid": 1,
            "image_name": "synpic100.jpg",
            "question": QUESTION,
            "answer": "nodule",
            "image_organ": "CHEST",
            "answer_type": "OPEN",
            "question_type": "ABN",
        },
        {"qid": 2, "image_name": "synpic100.jpg", "question": "is this normal?", "answer": "no"},
    ]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(rows))


def make_slake(root):
    (root / "imgs" / "xmlab1").mkdir(parents=True)
    (root / "imgs" / "xmlab1" / "source.jpg").write_bytes(_image(11))
    rows = [
        {
            "img_id": 1,
            "img_name": "xmlab1/source.jpg",
            "question": "which organ is abnormal in this axial image of the abdomen",
            "answer": "liver",
            "q_lang": "en",
            "qid": 7,
        }
    ]
    (root / "test.json").write_text(json.dumps(rows))
    (root / "train.json").write_text(json.dumps([]))


def make_pathvqa(root):
    (root / "qas" / "test").mkdir(parents=True)
    (root / "images" / "test").mkdir(parents=True)
    (root / "images" / "test" / "test_0001.jpg").write_bytes(_image(12))
    rows = [
        {
            "image": "test_0001",
            "question": "what is present in the lamina propria of this section",
            "answer": "lymphocytes",
        }
    ]
    (root / "qas" / "test" / "test_qa.pkl").write_bytes(pickle.dumps(rows))


def make_pmc_vqa(root):
    (root / "images").mkdir(parents=True)
    (root / "images" / "PMC123_fig1.jpg").write_bytes(_image(13))
    with (root / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "Figure_path",
                "Question",
                "Answer",
                "Choice A",
                "Choice B",
                "Choice C",
                "Choice D",
                "Answer_label",
            ]
        )
        writer.writerow(
            [
                "PMC123_fig1.jpg",
                "What imaging modality was used to acquire the image shown here",
                "CT",
                "A:CT",
                "B:MRI",
                "C:US",
                "D:PET",
                "A",
            ]
        )


MAKERS = {
    "vqa_rad": make_vqa_rad,
    "slake": make_slake,
    "pathvqa": make_pathvqa,
    "pmc_vqa": make_pmc_vqa,
}


@pytest.fixture()
def index_dir(tmp_path):
    out = tmp_path / "index"
    for name, make in MAKERS.items():
        root = tmp_path / name
        make(root)
        build_benchmark(name, name, root, out)
    return out


def test_each_format_builds(index_dir):
    listing = json.loads((index_dir / "index.json").read_text())
    assert {k: (v["items"], v["images"], v["texts"]) for k, v in listing.items()} == {
        "vqa_rad": (2, 1, 2),
        "slake": (1, 1, 1),
        "pathvqa": (1, 1, 1),
        "pmc_vqa": (1, 1, 1),
    }


def test_leaks_by_image_and_text(index_dir):
    index = BenchmarkIndex.load(index_dir, DecontamConfig())
    records = [
        {
            "record_id": "img-leak",
            "image": _image(12, size=(100, 80), quality=40),
            "caption": "unrelated words",
        },
        {
            "record_id": "text-leak",
            "image": _image(50),
            "caption": f"Figure 2. {QUESTION.capitalize()}? Arrow marks the nodule.",
        },
        {"record_id": "short-q", "image": _image(51), "caption": "Is this normal? yes it is"},
        {
            "record_id": "clean",
            "image": _image(52),
            "caption": "a sagittal mri of the knee shows a meniscal tear",
        },
    ]
    leaks = find_leaks(records, index)
    assert [(x.record_id, x.reason, x.item_id, x.kind) for x in leaks] == [
        ("img-leak", "benchmark_leak:pathvqa", "test_qa:0", "image"),
        ("text-leak", "benchmark_leak:vqa_rad", "VQA_RAD Dataset Public:1", "text"),
    ]
    assert first_leak(leaks).record_id == "img-leak"


def test_decontaminate_beam(index_dir):
    config = DecontamConfig(enabled=True, index=str(index_dir))
    records = [
        {"record_id": "leak", "image": _image(11, quality=50), "caption": ""},
        {"record_id": "clean", "image": _image(60), "caption": "nothing to see"},
    ]
    with beam.Pipeline() as pipeline:
        out = pipeline | beam.Create(records) | Decontaminate(config, with_matches=True)
        assert_that(
            out["decisions"],
            equal_to([("leak", "benchmark_leak:slake", "slake:test:7")]),
            label="decisions",
        )
        assert_that(
            out["matches"] | beam.Map(lambda r: (r["record_id"], r["benchmark"], r["kind"])),
            equal_to([("leak", "slake", "image")]),
            label="matches",
        )


def test_bad_inputs_are_named_errors(tmp_path):
    with pytest.raises(MissingFile):
        build_benchmark("x", "slake", tmp_path, tmp_path / "i")
    evil = tmp_path / "evil" / "qas" / "test"
    evil.mkdir(parents=True)
    (evil / "test_qa.pkl").write_bytes(pickle.dumps([{"image": argparse.Namespace()}]))
    with pytest.raises(MalformedMetadata):
        build_benchmark("evil", "pathvqa", tmp_path / "evil", tmp_path / "i")
    with pytest.raises(MissingFile):
        BenchmarkIndex.load(tmp_path / "empty", DecontamConfig())
    with pytest.raises(ValueError):
        DecontamConfig(enabled=True)


def test_cli_benchmark_add(tmp_path, capsys):
    make_vqa_rad(tmp_path / "vqa")
    parser = argparse.ArgumentParser(prog="curate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "benchmark",
            "add",
            "--name",
            "vqa_rad",
            "--format",
            "vqa_rad",
            "--path",
            str(tmp_path / "vqa"),
            "--index",
            str(tmp_path / "idx"),
        ]
    )
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 2
    args = parser.parse_args(
        [
            "benchmark",
            "add",
            "--name",
            "x",
            "--format",
            "slake",
            "--path",
            str(tmp_path / "nope"),
            "--index",
            str(tmp_path / "idx"),
        ]
    )
    assert args.func(args) == 2
    assert "missing_file" in capsys.readouterr().err


def test_decontam_stage_in_run_chain(index_dir):
    from curate.decontaminate.benchmarks import DecontamStage
    from curate.stages import run_chain

    stage = DecontamStage(DecontamConfig(enabled=True, index=str(index_dir)))
    records = [
        {"record_id": "leak", "image": _image(13, size=(150, 120)), "caption": "x"},
        {"record_id": "clean", "image": _image(61), "caption": "y"},
    ]
    result = run_chain([stage], records)
    assert [r["record_id"] for r in result.kept] == ["clean"]
    assert [(r.record["record_id"], r.reason, r.duplicate_of) for r in result.rejected] == [
        ("leak", "benchmark_leak:pmc_vqa", "pmc_vqa:test:0")
    ]
    assert [leak.item_id for leak in stage.leaks] == ["test:0"]
    assert result.counts["decontam"].balanced
