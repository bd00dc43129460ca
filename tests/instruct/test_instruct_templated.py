"""Templated (CheXinstruct-style) generator: answers from labels and entities, determinism,
balance, options, matching distractors and the declared uncertain policy."""

from __future__ import annotations

import copy
import csv
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from curate.errors import SpecError
from curate.instruct.config import InstructConfig
from curate.instruct.generator import InstructionGenerator
from curate.instruct.templated import TemplatedGenerator, parse_template_set
from curate.resources import resource_dir
from curate.schema import load_schema
from curate.stages import Rejected

FINDINGS = "There is a small left pleural effusion. No pneumothorax. Patchy opacity in the right lower lobe."
IMPRESSION = "Small left pleural effusion. Right lower lobe opacity, possibly pneumonia."


def entity(
    record: dict, field: str, surface: str, name: str, assertion: str, types=("T047",)
) -> dict:
    start = record[field].index(surface)
    return {
        "cui": "C" + name[:4].upper(),
        "name": name,
        "semantic_types": list(types),
        "field": field,
        "start": start,
        "end": start + len(surface),
        "score": 0.9,
        "assertion": assertion,
    }


def report_record(record_id: str = "p10/s1/d1", split: str = "train", **overrides) -> dict:
    record = {
        "record_id": record_id,
        "split": split,
        "findings": FINDINGS,
        "impression": IMPRESSION,
        "indication": "Cough.",
        "comparison": "None.",
        "view_position": "PA",
        "modality": "CR",
        "image": b"\x89PNG-fake-bytes",
        "image_sha256": "ab" * 32,
        "image_format": "PNG",
        "labels": [],
        "derived_labels": [
            {"observation": "Pleural Effusion", "value": "positive"},
            {"observation": "Pneumothorax", "value": "negative"},
            {"observation": "Cardiomegaly", "value": "negative"},
            {"observation": "Edema", "value": "negative"},
            {"observation": "Pneumonia", "value": "uncertain"},
            {"observation": "Fracture", "value": "not_mentioned"},
            {"observation": "No Finding", "value": "negative"},
        ],
    }
    record["entities"] = [
        entity(record, "findings", "pleural effusion", "Pleural effusion", "present"),
        entity(record, "findings", "pneumothorax", "Pneumothorax", "absent"),
        entity(record, "findings", "opacity", "Lung opacity", "present", ("T033",)),
        entity(record, "impression", "pneumonia", "Pneumonia", "uncertain"),
    ]
    record.update(overrides)
    return record


def figure_record(
    record_id: str = "PMC1/F1/0", split: str = "train", caption: str | None = None
) -> dict:
    return {
        "record_id": record_id,
        "split": split,
        "caption": caption or "Axial CT of the abdomen showing a hypodense liver lesion.",
        "inline_mentions": ["CT (Figure 1) showed a liver lesion."],
        "figure_title": None,
        "image": b"\xff\xd8jpeg",
        "image_sha256": "cd" * 32,
        "image_format": "JPEG",
        "modality": "CT",
        "entities": [],
    }


def pool_of(split: str, n: int = 6) -> list[dict]:
    return [
        {
            "record_id": f"{split}-{i}",
            "split": split,
            "impression": f"Impression text number {i} for the {split} split.",
        }
        for i in range(n)
    ]


def by_task(samples: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for sample in samples:
        out.setdefault(sample["task"], []).append(sample)
    return out


def test_report_record_yields_each_family_with_answers_from_the_text():
    samples = TemplatedGenerator().generate(report_record(), pool_of("train"))
    tasks = by_task(samples)
    assert sorted(tasks) == [
        "coarse.disease_classification",
        "coarse.modality_classification",
        "coarse.view_classification",
        "fine.laterality",
        "fine.location",
        "matching.image_text",
        "qa.closed",
        "qa.open",
        "text_generation.findings",
        "text_generation.impression",
        "text_generation.summarization",
    ]
    view = tasks["coarse.view_classification"][0]
    assert view["answer"].endswith(". posteroanterior (PA)") and view["answer"] in view["options"]
    assert [o[:3] for o in view["options"]] == ["A. ", "B. ", "C. ", "D. "]
    assert tasks["coarse.modality_classification"][0]["answer"].endswith(". X-ray")
    disease = tasks["coarse.disease_classification"][0]
    # positives: pleural effusion (label) and opacity (an entity the labels do not name, phrased
    # by its surface form); distractors are the explicit negatives only
    assert disease["answer"][3:] in ("Pleural effusion", "Opacity")
    assert sorted(o[3:] for o in disease["options"] if o != disease["answer"]) == [
        "Cardiomegaly",
        "Edema",
        "Pneumothorax",
    ]
    laterality = {
        ("effusion" if "pleural effusion" in s["conversations"][0]["value"] else "opacity"): s[
            "answer"
        ][3:]
        for s in tasks["fine.laterality"]
    }
    assert laterality == {"effusion": "Left", "opacity": "Right"}
    location = {s["conversations"][0]["value"]: s["answer"] for s in tasks["fine.location"]}
    assert len(location) == 1
    question, answer = location.popitem()
    assert "opacity" in question and answer in (
        "In the right lower lobe.",
        "It is in the right lower lobe.",
    )
    assert tasks["text_generation.findings"][0]["answer"] == FINDINGS
    assert tasks["text_generation.impression"][0]["answer"] == IMPRESSION
    summary = tasks["text_generation.summarization"][0]
    assert FINDINGS in summary["conversations"][0]["value"] and summary["answer"] == IMPRESSION
    assert summary["image"] is None and summary["image_sha256"] is None  # text-only task
    assert tasks["qa.open"][0]["answer"] == "Opacity and pleural effusion."
    for sample in samples:
        assert sample["generator"] == "templated"
        assert sample["template_version"] == "chexinstruct.v1"
        assert sample["source_record_id"] == "p10/s1/d1" and sample["split"] == "train"
        assert sample["source_schema"] == "report_image.v1"
        assert sample["record_id"].startswith("p10/s1/d1#" + sample["task"] + ".")
        assert [t["from"] for t in sample["conversations"]] == ["human", "gpt"]
        assert sample["conversations"][1]["value"] == sample["answer"]


def test_closed_questions_absent_is_no_and_uncertain_skipped_by_default():
    samples = by_task(TemplatedGenerator().generate(report_record(), []))["qa.closed"]
    answers = {s["conversations"][0]["value"]: s["answer"] for s in samples}
    assert Counter(answers.values()) == Counter({"Yes": 2, "No": 2})
    for question, answer in answers.items():
        if "pneumothorax" in question or "cardiomegaly" in question or "edema" in question:
            assert answer == "No"
        else:
            assert answer == "Yes"
        assert "pneumonia" not in question  # uncertain → skip (declared policy)
        assert "no finding" not in question  # excluded observation
    assert all(s["options"] == ["Yes", "No"] for s in samples)


def test_uncertain_policy_answer_uncertain_from_template_file():
    path = resource_dir("curation_rules") / "templates" / "chexinstruct.v1.yaml"
    data = yaml.safe_load(path.read_text())
    data["policy"]["uncertain"]["value"] = "answer_uncertain"
    data["version"] = 99
    generator = TemplatedGenerator(parse_template_set(data, "test"), tasks=["qa.closed"])
    samples = generator.generate(report_record(), [])
    uncertain = [s for s in samples if s["answer"] == "Uncertain"]
    assert len(uncertain) == 1 and "pneumonia" in uncertain[0]["conversations"][0]["value"]
    assert uncertain[0]["options"] == ["Yes", "No", "Uncertain"]
    assert Counter(s["answer"] for s in samples) == Counter({"Yes": 2, "No": 2, "Uncertain": 1})


def test_yes_no_balanced_per_task_over_many_records():
    records = []
    for i in range(40):
        labels = [
            {"observation": name, "value": "positive" if (i + j) % 3 == 0 else "negative"}
            for j, name in enumerate(["Edema", "Atelectasis", "Consolidation", "Pneumothorax"])
        ]
        records.append(report_record(f"r{i}", derived_labels=labels, entities=[]))
    generator = TemplatedGenerator(tasks=["qa.closed"])
    answers = Counter(s["answer"] for r in records for s in generator.generate(r, []))
    assert answers["Yes"] == answers["No"] > 0


def test_same_input_same_output_whatever_the_pool_order():
    record = report_record()
    pool = pool_of("train", 10)
    first = TemplatedGenerator().generate(copy.deepcopy(record), pool)
    second = TemplatedGenerator().generate(copy.deepcopy(record), list(reversed(pool)))
    assert first == second
    # a different record id draws other phrasings/orders somewhere, never other answers
    other = TemplatedGenerator().generate(report_record("p10/s1/d2"), pool)
    assert [
        s["answer"][3:] if s["answer_type"] == "choice" else s["answer"]
        for s in by_task(other)["text_generation.findings"]
    ] == [FINDINGS]


def test_matching_uses_same_split_distractors_only_and_never_itself():
    record = report_record(split="test")
    pool = (
        pool_of("train", 10)
        + pool_of("test", 4)
        + [{"record_id": record["record_id"], "split": "test", "impression": IMPRESSION}]
    )
    sample = by_task(TemplatedGenerator().generate(record, pool))["matching.image_text"][0]
    texts = [o[3:] for o in sample["options"]]
    assert sample["answer"][3:] == IMPRESSION
    assert texts.count(IMPRESSION) == 1
    assert all("test split" in t for t in texts if t != IMPRESSION)
    # too few distinct distractors: no matching task rather than a degenerate one
    few = by_task(TemplatedGenerator().generate(record, pool_of("test", 2)))
    assert "matching.image_text" not in few


def test_figure_without_entities_still_gets_caption_modality_and_matching():
    pool = [
        {
            "record_id": f"PMC9/F{i}/0",
            "split": "train",
            "caption": f"Caption of another figure {i}.",
        }
        for i in range(5)
    ]
    samples = TemplatedGenerator().generate(figure_record(), pool)
    tasks = by_task(samples)
    assert sorted(tasks) == [
        "coarse.modality_classification",
        "matching.image_text",
        "text_generation.caption",
    ]
    assert tasks["text_generation.caption"][0]["answer"] == figure_record()["caption"]
    assert tasks["coarse.modality_classification"][0]["answer"].endswith(". CT")
    assert all(s["source_schema"] == "figure_caption.v1" for s in samples)


def test_placeholder_text_and_missing_image_limit_tasks():
    record = report_record(
        findings="Heart size ___ normal. No effusion.",
        image=None,
        image_sha256=None,
        derived_labels=[],
        entities=[],
    )
    tasks = by_task(TemplatedGenerator().generate(record, pool_of("train")))
    assert tasks == {}  # no image → no image task; placeholder → no summarisation
    generator = InstructionGenerator(InstructConfig())
    outputs = generator.generate(record, [])
    assert len(outputs) == 1 and isinstance(outputs[0], Rejected)
    assert outputs[0].reason == "no_applicable_template_task"
    assert outputs[0].record["source_record_id"] == record["record_id"]


def test_conflicting_statements_of_one_source_are_not_asked():
    record = report_record(derived_labels=[], entities=[])
    record["findings"] = (
        "No new effusion. Small effusion at the left base. No pneumothorax. Heart normal."
    )
    record["entities"] = [
        {**entity(record, "findings", "effusion", "Pleural effusion", "absent")},
        {**entity(record, "findings", "Small effusion", "Pleural effusion", "present")},
        entity(record, "findings", "pneumothorax", "Pneumothorax", "absent"),
    ]
    samples = TemplatedGenerator(tasks=["qa.closed", "fine.laterality"]).generate(record, [])
    assert samples == []  # effusion is ambiguous, so no (yes, no) pair and no laterality question


def test_template_file_is_validated():
    path = resource_dir("curation_rules") / "templates" / "chexinstruct.v1.yaml"
    data = yaml.safe_load(path.read_text())
    broken = copy.deepcopy(data)
    del broken["policy"]["uncertain"]["why"]
    with pytest.raises(SpecError, match="policy.uncertain needs"):
        parse_template_set(broken, "t")
    broken = copy.deepcopy(data)
    broken["tasks"]["qa.closed"]["phrasings"] = []
    with pytest.raises(SpecError, match="phrasings"):
        parse_template_set(broken, "t")
    broken = copy.deepcopy(data)
    broken["tasks"]["qa.telepathy"] = dict(data["tasks"]["qa.open"])
    with pytest.raises(SpecError, match="no builder"):
        parse_template_set(broken, "t")
    with pytest.raises(SpecError, match="unknown templated tasks"):
        TemplatedGenerator(tasks=["qa.nothing"])
    for name, task in data["tasks"].items():
        assert len(task["phrasings"]) >= 3, name  # several phrasings per task


def test_instructions_fit_the_instruction_schema():
    samples = TemplatedGenerator().generate(report_record(), pool_of("train"))
    schema = load_schema("instruction.v1")
    table = pa.Table.from_pylist(samples, schema=schema.arrow)
    assert table.num_rows == len(samples)
    assert len(set(table.column("record_id").to_pylist())) == len(samples)


def _iu_xray_rows(realdata: Path) -> list[dict]:
    files = sorted((realdata / "reports" / "iu_xray").glob("*.csv"))
    if not files:
        pytest.skip("no IU X-ray CSV in the real-data folder")
    with files[0].open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.realdata
def test_real_iu_xray_reports_every_record_accounted(realdata):
    rows = _iu_xray_rows(realdata)[:300]
    records = [
        {
            "record_id": f"iu/{row.get('uid')}/{i}",
            "split": "train",
            "findings": row.get("findings") or "",
            "impression": row.get("impression") or "",
            "indication": row.get("indication") or "",
            "comparison": row.get("comparison") or "",
            "view_position": None,
            "modality": "CR",
            "image": None,
            "image_sha256": f"{i:064x}",
            "image_format": "PNG",
            "labels": [],
            "derived_labels": [],
            "entities": [],
        }
        for i, row in enumerate(rows)
    ]
    pool = [
        {
            "record_id": r["record_id"],
            "split": "train",
            "impression": r["impression"],
            "findings": r["findings"],
        }
        for r in records[:64]
    ]
    generator = InstructionGenerator(InstructConfig())
    outputs = [generator.generate(record, pool) for record in records]
    assert all(outputs)  # every record: instructions or a reason
    kept = [o for out in outputs for o in out if isinstance(o, dict)]
    assert kept, "real reports produce templated instructions"
    for sample in kept:
        # IU X-ray de-identification placeholders never become generation targets
        if sample["answer_type"] == "generation":
            assert "XXXX" not in sample["answer"]
    pa.Table.from_pylist(kept, schema=load_schema("instruction.v1").arrow)


def test_view_distractors_stay_in_their_option_set_and_modality_vocabulary():
    generator = TemplatedGenerator(
        tasks=["coarse.view_classification", "coarse.modality_classification"]
    )
    frontal = by_task(
        generator.generate(report_record(view_position="FRONTAL", modality="x-ray"), [])
    )
    view = frontal["coarse.view_classification"][0]
    assert sorted(o[3:] for o in view["options"]) == [
        "frontal",
        "lateral",
    ]  # never PA/AP beside frontal
    assert view["answer"][3:] == "frontal"
    assert frontal["coarse.modality_classification"][0]["answer"][3:] == "X-ray"
    pa = by_task(generator.generate(report_record(view_position="pa"), []))[
        "coarse.view_classification"
    ][0]
    assert "frontal" not in [o[3:] for o in pa["options"]] and len(pa["options"]) == 4
    unknown = generator.generate(report_record(view_position="SWIMMERS", modality="chart"), [])
    assert unknown == []


def test_bad_placeholders_and_odd_field_types_are_handled():
    path = resource_dir("curation_rules") / "templates" / "chexinstruct.v1.yaml"
    data = yaml.safe_load(path.read_text())
    data["tasks"]["qa.open"]["phrasings"] = ["What is {unknown}?", "b", "c"]
    with pytest.raises(SpecError, match="bad placeholder"):
        parse_template_set(data, "t")
    odd = figure_record()
    odd["inline_mentions"] = "not a list"
    odd["entities"] = [
        {
            "name": None,
            "semantic_types": None,
            "assertion": "present",
            "field": 3,
            "start": "x",
            "end": None,
        }
    ]
    samples = TemplatedGenerator().generate(odd, [])
    assert sorted(s["task"] for s in samples) == [
        "coarse.modality_classification",
        "text_generation.caption",
    ]
