"""`curate export llava` from instruction shards, and the Beam transform end to end."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from curate.instruct.beam import GenerateInstructions, usage_from_metrics
from curate.instruct.cli import register
from curate.instruct.config import InstructConfig
from curate.instruct.export import export_llava
from curate.instruct.generator import InstructionGenerator
from curate.schema import load_schema
from curate.shards.images import ImageNotFound
from curate.stages import Failed, Rejected

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_instruct_templated import figure_record, report_record  # noqa: E402


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def with_image(record: dict, data: bytes, fmt: str = "PNG") -> dict:
    return {
        **record,
        "image": data,
        "image_sha256": hashlib.sha256(data).hexdigest(),
        "image_format": fmt,
    }


def write_shard(out_dir: Path, split: str, rows: list[dict]) -> None:
    schema = load_schema("instruction.v1")
    path = out_dir / "instructions" / split / f"part-{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.arrow), path, compression="zstd")


def write_record_shard(path: Path, records: list[dict], row_group_rows: int) -> None:
    """A record shard with the columns the image join reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ("record_id", "image", "image_sha256")
    pq.write_table(
        pa.Table.from_pylist([{c: r[c] for c in columns} for r in records]),
        path,
        row_group_size=row_group_rows,
    )


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="curate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_export_llava_json_and_images_embedded_in_instructions(tmp_path, capsys):
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    generator = InstructionGenerator(InstructConfig(include_image=True))
    rows = [
        o
        for o in generator.generate(with_image(report_record("p1/s1/d1"), red), [])
        if isinstance(o, dict)
    ]
    rows += [
        o
        for o in generator.generate(with_image(figure_record("PMC2/F1/0"), blue), [])
        if isinstance(o, dict)
    ]
    write_shard(tmp_path / "build", "train", rows)
    write_shard(tmp_path / "build", "test", rows[:1])

    assert (
        cli(
            "export",
            "llava",
            "--data",
            str(tmp_path / "build"),
            "--split",
            "train",
            "--out",
            str(tmp_path / "llava"),
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    samples = json.loads((tmp_path / "llava" / "llava_train.json").read_text())
    assert summary["samples"] == len(rows) == len(samples) and summary["images_written"] == 2
    assert summary["shard_row_groups_read"] == 0  # every image came with its instruction
    assert [s["id"] for s in samples] == sorted(r["record_id"] for r in rows)
    images = sorted(p.name for p in (tmp_path / "llava" / "images").iterdir())
    assert images == sorted(f"{hashlib.sha256(d).hexdigest()}.png" for d in (red, blue))
    by_id = {r["record_id"]: r for r in rows}
    for sample in samples:
        row = by_id[sample["id"]]
        turns = sample["conversations"]
        assert [t["from"] for t in turns] == [t["from"] for t in row["conversations"]]
        if row["image"] is None:  # text-only summarisation
            assert "image" not in sample and "<image>" not in turns[0]["value"]
            assert summary["text_only"] >= 1
        else:
            assert sample["image"] == f"images/{row['image_sha256']}.png"
            assert (tmp_path / "llava" / sample["image"]).read_bytes() == row["image"]
            assert turns[0]["value"] == "<image>\n" + row["conversations"][0]["value"]
            assert all("<image>" not in t["value"] for t in turns[1:])
        assert turns[-1]["value"] == row["conversations"][-1]["value"]


def test_export_errors_are_named(tmp_path, capsys):
    assert cli("export", "llava", "--data", str(tmp_path), "--out", str(tmp_path / "o")) == 2
    assert "no_instruction_shards" in capsys.readouterr().err
    row = next(
        o
        for o in InstructionGenerator(InstructConfig(include_image=True)).generate(
            with_image(figure_record(), png((1, 2, 3))), []
        )
        if isinstance(o, dict)
    )
    row["image_sha256"] = "0" * 64
    write_shard(tmp_path / "b", "train", [row])
    with pytest.raises(Exception, match="image_hash_mismatch|hash to"):
        export_llava(str(tmp_path / "b"), "train", str(tmp_path / "o"))


def test_beam_transform_matches_pure_generator_and_keeps_splits_apart():
    records = [
        with_image(
            report_record(f"tr{i}", split="train", impression=f"Train impression {i} is here."),
            png((i, 0, 0)),
        )
        for i in range(6)
    ]
    records += [
        with_image(
            report_record(f"te{i}", split="test", impression=f"Test impression {i} is here."),
            png((0, i, 0)),
        )
        for i in range(5)
    ]
    records.append(
        report_record(
            "bare",
            split="test",
            image=None,
            image_sha256=None,
            findings="",
            impression="",
            derived_labels=[],
            entities=[],
        )
    )
    config = InstructConfig(distractor_pool_size=64)

    with beam.Pipeline() as pipeline:
        outputs = pipeline | beam.Create(records) | GenerateInstructions(config)
        ids = outputs.instructions | "Ids" >> beam.Map(lambda r: r["record_id"])
        matching = (
            outputs.instructions
            | beam.Filter(lambda r: r["task"] == "matching.image_text")
            | beam.Map(lambda r: (r["split"], all(r["split"] in o.lower() for o in r["options"])))
        )
        rejected = outputs.rejected | beam.Map(lambda r: (r.record["source_record_id"], r.reason))
        failed = outputs.failed | beam.Map(lambda f: f.reason)

        generator = InstructionGenerator(config)
        expected_ids = []
        for record in records:
            pool = [
                {k: r.get(k) for k in ("record_id", "split", "impression", "findings")}
                for r in records
                if r["split"] == record["split"]
            ]
            expected_ids += [
                o["record_id"] for o in generator.generate(record, pool) if isinstance(o, dict)
            ]
        assert_that(ids, equal_to(expected_ids), label="same instructions as the pure generator")
        assert_that(
            matching, equal_to([("train", True)] * 6 + [("test", True)] * 5), label="split-local"
        )
        assert_that(rejected, equal_to([("bare", "no_applicable_template_task")]), label="rejected")
        assert_that(failed, equal_to([]), label="failed")


def test_beam_transform_routes_failures(tmp_path):
    # a record of no known source schema becomes one Failed dead letter, not a crash
    broken = {"record_id": "weird", "split": "train", "something": 1}
    with beam.Pipeline() as pipeline:
        outputs = pipeline | beam.Create([broken]) | GenerateInstructions(InstructConfig())
        assert_that(
            outputs.failed | beam.Map(lambda f: (f.record_id, f.stage, isinstance(f, Failed))),
            equal_to([("weird", "instruct.input", True)]),
        )
        assert_that(
            outputs.rejected | beam.Map(lambda r: isinstance(r, Rejected)), equal_to([]), label="r"
        )


def test_beam_llm_usage_reaches_metrics_and_record_outcomes(tmp_path):
    from openai_server import FakeOpenAIServer

    from curate.instruct.generator import record_outcome

    figures = [
        with_image(
            figure_record(f"PMC{i}/F1/0", caption=f"CT of case {i} showing a liver cyst."),
            png((i, i, i)),
        )
        for i in range(5)
    ]
    with FakeOpenAIServer({"case 3 ": ["refusal"]}) as server:
        config = InstructConfig(
            generators=["llm"],
            llm={"base_url": server.base_url, "api_key_env": None, "cache_dir": str(tmp_path)},
        )
        pipeline = beam.Pipeline()
        outputs = pipeline | beam.Create(figures) | GenerateInstructions(config)
        assert_that(
            outputs.instructions | beam.Map(lambda r: r["source_record_id"]),
            equal_to([f"PMC{i}/F1/0" for i in (0, 1, 2, 4)]),
            label="kept",
        )
        assert_that(
            outputs.rejected | beam.Map(lambda r: (r.record["source_record_id"], r.reason)),
            equal_to([("PMC3/F1/0", "refusal")]),
            label="refused",
        )
        result = pipeline.run()
        result.wait_until_finish()
        usage = usage_from_metrics(result.metrics(), config)
        assert server.requests == 5
        assert usage["prompt_tokens"] == server.prompt_tokens
    assert usage["requests"] == 5 and usage["answers"] == 5 and usage["cache_hits"] == 0
    assert record_outcome([Rejected({}, "refusal")]) == "rejected"
    assert record_outcome([Rejected({}, "refusal"), {"record_id": "x"}]) == "out"
    assert record_outcome([Failed("u", "instruct.llm", "E", "budget_exceeded", "m")]) == "failed"


def test_export_joins_images_from_record_shards_when_instructions_hold_only_hashes(tmp_path):
    green = png((0, 255, 0))
    record = with_image(figure_record("PMC5/F1/0"), green)
    generator = InstructionGenerator(InstructConfig(include_image=False))
    rows = [o for o in generator.generate(record, []) if isinstance(o, dict)]
    assert rows and all(r["image"] is None and r["image_sha256"] for r in rows)
    write_shard(tmp_path / "build", "train", rows)
    with pytest.raises(
        ImageNotFound, match=f"in no shard under .*train, e.g. {record['image_sha256']}"
    ):
        export_llava(str(tmp_path / "build"), "train", str(tmp_path / "out0"))
    assert not (tmp_path / "out0").exists()  # nothing written before the error
    shard = tmp_path / "build" / "shards" / "train" / "part-train-00000-of-00001.parquet"
    write_record_shard(shard, [record], row_group_rows=1)
    summary = export_llava(str(tmp_path / "build"), "train", str(tmp_path / "out"))
    assert summary.images_written == 1 and summary.samples == len(rows)
    name = f"images/{record['image_sha256']}.png"  # with_image sets PNG
    assert (tmp_path / "out" / name).read_bytes() == green
    samples = json.loads((tmp_path / "out" / "llava_train.json").read_text())
    assert {s["image"] for s in samples} == {name}


def test_export_resolves_every_referenced_image_reading_each_row_group_once(tmp_path):
    records = [with_image(figure_record(f"PMC{i}/F1/0"), png((40 * i, 0, 0))) for i in range(6)]
    generator = InstructionGenerator(InstructConfig())  # the default references images
    rows = [o for r in records[:5] for o in generator.generate(r, []) if isinstance(o, dict)]
    assert len(rows) > 5 and all(r["image"] is None and r["image_sha256"] for r in rows)
    write_shard(tmp_path / "build", "train", rows)
    shards = tmp_path / "build" / "shards" / "train"
    write_record_shard(shards / "part-0.parquet", records[:4], row_group_rows=2)
    write_record_shard(shards / "part-1.parquet", records[4:], row_group_rows=2)

    summary = export_llava(str(tmp_path / "build"), "train", str(tmp_path / "out"))
    assert (summary.samples, summary.images_written, summary.text_only) == (len(rows), 5, 0)
    assert summary.shard_row_groups_read == 3  # records 0-1, 2-3, 4 (and 5, not wanted)
    written = {p.name: p.read_bytes() for p in (tmp_path / "out" / "images").iterdir()}
    assert written == {f"{r['image_sha256']}.png": r["image"] for r in records[:5]}
    samples = json.loads((tmp_path / "out" / "llava_train.json").read_text())
    by_id = {r["record_id"]: r for r in rows}
    assert all(s["image"] == f"images/{by_id[s['id']]['image_sha256']}.png" for s in samples)


def test_include_image_true_still_copies_the_bytes():
    assert InstructConfig().include_image is False
    record = with_image(figure_record("PMC6/F1/0"), png((9, 9, 9)))
    for include, expected in ((True, record["image"]), (False, None)):
        config = InstructConfig.model_validate({"include_image": include})
        rows = [o for o in InstructionGenerator(config).generate(record, []) if isinstance(o, dict)]
        with_images = [r for r in rows if r["image_sha256"]]
        assert with_images and all(r["image"] == expected for r in with_images)
        assert all(r["image_sha256"] == record["image_sha256"] for r in with_images)
