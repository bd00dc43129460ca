"""Paraphrase decontamination through the embedding pass (curate.decontaminate.semantic): the
index stores question embeddings, record sentences match by cosine, short questions only with
their answer, old indexes load with semantic matching off."""

from __future__ import annotations

import json

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from curate.decontaminate.beam import Decontaminate
from curate.decontaminate.benchmarks import BenchmarkIndex, build_benchmark, find_leaks
from curate.decontaminate.config import DecontamConfig
from curate.decontaminate.semantic import MODEL_KEY, index_status, manifest_fields, sentences

LONG_Q = "what abnormality is seen in the left kidney on this contrast enhanced scan?"
SHORT_Q = "is there a pneumothorax?"
ITEM_LONG, ITEM_SHORT = "VQA_RAD Dataset Public:1", "VQA_RAD Dataset Public:2"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("semantic")
    bench = root / "rad"
    bench.mkdir()
    items = [
        {"qid": 1, "image_name": "a.jpg", "question": LONG_Q, "answer": "cyst"},
        {"qid": 2, "image_name": "b.jpg", "question": SHORT_Q, "answer": "yes"},
    ]
    (bench / "VQA_RAD Dataset Public.json").write_text(json.dumps(items))
    summary = build_benchmark("vqa_rad", "vqa_rad", bench, root / "index", DecontamConfig())
    assert summary["text_model"] == "minilm"
    return root / "index"


def _semantic(leaks):
    return sorted((x.record_id, x.item_id) for x in leaks if x.match == "semantic")


def test_index_stores_unit_embeddings_and_names_the_model(index_dir):
    table = pq.read_table(index_dir / "vqa_rad.parquet")
    assert table.schema.metadata[MODEL_KEY] == b"minilm"
    vectors = [v for row in table.column("text_vectors").to_pylist() for v in row]
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)
    assert index_status(DecontamConfig(index=str(index_dir))) == {"vqa_rad": "on (minilm)"}


def test_paraphrased_long_question_is_found(index_dir):
    index = BenchmarkIndex.load(index_dir, DecontamConfig())
    records = [
        {
            "record_id": "para",
            "caption": "Figure 4. Which pathology can be seen in the left kidney on this "
            "contrast-enhanced CT? Arrows mark it.",
        },
        {"record_id": "clean", "caption": "Axial CT of the abdomen after contrast. No cyst."},
    ]
    leaks = find_leaks(records, index)
    assert _semantic(leaks) == [("para", ITEM_LONG)]
    (leak,) = leaks
    assert leak.reason == "benchmark_leak:vqa_rad" and leak.kind == "text"
    assert leak.cosine is not None and leak.cosine >= index.config.semantic.min_cosine
    assert leak.as_row()["match"] == "semantic" and "cosine=" in leak.detail
    # the verbatim rules alone (v1) do not see the paraphrase
    v1 = BenchmarkIndex.load(index_dir, DecontamConfig.from_rules("dedup/decontam.v1"))
    assert find_leaks(records, v1) == []


def test_short_paraphrase_needs_its_answer_and_a_question(index_dir):
    index = BenchmarkIndex.load(index_dir, DecontamConfig())
    records = [
        {
            "record_id": "with-answer",
            "caption": "Question: Does the image show a pneumothorax? Answer: Yes.",
        },
        {
            "record_id": "no-answer",
            "caption": "Does the image show a pneumothorax? It was repeated.",
        },
        # a statement near the question (cosine ~0.78) with "no" next to it is a finding
        {
            "record_id": "statement",
            "caption": "No pneumothorax is seen. Yes, the lines are in place.",
        },
    ]
    assert _semantic(find_leaks(records, index)) == [("with-answer", ITEM_SHORT)]
    no_window = BenchmarkIndex.load(index_dir, DecontamConfig(answer_window=0))
    assert find_leaks(records, no_window) == []


def test_verbatim_match_is_not_reported_twice(index_dir):
    index = BenchmarkIndex.load(index_dir, DecontamConfig())
    leaks = find_leaks([{"record_id": "copy", "caption": f"Q: {LONG_Q} A: cyst"}], index)
    assert [(x.item_id, x.match) for x in leaks] == [(ITEM_LONG, "verbatim")]


def test_index_without_embeddings_loads_with_semantic_off(index_dir, tmp_path, caplog):
    old = tmp_path / "old"
    old.mkdir()
    table = pq.read_table(index_dir / "vqa_rad.parquet").drop_columns(["text_vectors"])
    meta = {
        k: v for k, v in table.schema.metadata.items() if not k.startswith(b"curate.benchmark.text")
    }
    pq.write_table(table.replace_schema_metadata(meta), old / "vqa_rad.parquet")
    config = DecontamConfig(index=str(old))
    index = BenchmarkIndex.load(old, config)
    assert index.semantic_status["vqa_rad"].startswith("off: the index has no question embeddings")
    assert "no question embeddings" in caplog.text
    assert index_status(config) == index.semantic_status
    records = [
        {
            "record_id": "para",
            "caption": "Which pathology can be seen in the left kidney on this contrast-enhanced CT?",
        },
        {"record_id": "copy", "caption": f"{LONG_Q} cyst"},
    ]
    leaks = find_leaks(records, index)
    assert [(x.record_id, x.match) for x in leaks] == [("copy", "verbatim")]
    fields = manifest_fields(config, [x.as_row() for x in leaks])
    assert fields["by_match"] == {"verbatim": 1}
    assert fields["warnings"] == [
        f"vqa_rad: paraphrase matching {index.semantic_status['vqa_rad']}"
    ]
    assert manifest_fields(DecontamConfig(index=str(index_dir)), [])["warnings"] == []


def test_rule_versions():
    v1 = DecontamConfig.from_rules("dedup/decontam.v1")
    v2 = DecontamConfig.from_rules("dedup/decontam.v2")
    assert not v1.semantic.enabled and v2.semantic.enabled
    # the model defaults are v2; v1 differs only in switching paraphrases off
    assert v2.model_dump(exclude={"rules"}) == DecontamConfig().model_dump(exclude={"rules"})
    assert v1.model_dump(exclude={"rules", "semantic"}) == v2.model_dump(
        exclude={"rules", "semantic"}
    )
    assert DecontamConfig(rules="dedup/decontam.v1", semantic={"enabled": True}).semantic.enabled


def test_sentences_keep_word_offsets():
    text = "Question: Is there a mass? Answer: yes.\nFigure 3. The liver is normal."
    found = sentences(text, min_tokens=3)
    assert [(s.text, s.is_question) for s in found] == [
        ("Is there a mass?", True),
        ("The liver is normal.", False),
    ]
    # word offsets point into the whole text's tokens ("question is there a mass" = 0..5)
    assert [(s.start, s.end) for s in found] == [(0, 5), (9, 13)]


def test_beam_rejects_a_paraphrase_with_cosine_in_the_match(index_dir):
    config = DecontamConfig(enabled=True, index=str(index_dir))
    records = [
        {"record_id": "para", "caption": "Q: Does the image show a pneumothorax? A: yes"},
        {"record_id": "clean", "caption": "Sagittal MRI of the knee with a meniscal tear."},
    ]
    with beam.Pipeline() as pipeline:
        out = pipeline | beam.Create(records) | Decontaminate(config, with_matches=True)
        assert_that(
            out["decisions"],
            equal_to([("para", "benchmark_leak:vqa_rad", f"vqa_rad:{ITEM_SHORT}")]),
            label="decisions",
        )
        assert_that(
            out["matches"] | beam.Map(lambda r: (r["record_id"], r["match"], r["cosine"] >= 0.8)),
            equal_to([("para", "semantic", True)]),
            label="matches",
        )
