"""LinkStage on figure-caption and report records, through run_chain, with bad text."""

from __future__ import annotations

import pytest

from curate.enrich.link.config import LinkConfig
from curate.enrich.link.stage import LinkStage
from curate.stages import run_chain


@pytest.fixture(scope="module")
def stage(lexicon_kb) -> LinkStage:
    stage = LinkStage(LinkConfig(enabled=True, kb=str(lexicon_kb)))
    stage.setup()
    return stage


def test_figure_record_gets_entities_for_caption_and_each_inline_mention(stage):
    record = {
        "record_id": "PMC1/F1/0",
        "caption": "Chest radiograph shows a right pneumothorax.",
        "inline_mentions": ["No pleural effusion was seen (Fig. 1).", "Cardiomegaly (Fig. 1)."],
    }
    result = run_chain([stage], [record])
    assert result.counts["link"].as_dict()["out"] == 1
    out = result.kept[0]
    assert [(e["field"], e["name"], e["assertion"]) for e in out["entities"]] == [
        ("caption", "Chest", "present"),
        ("caption", "Pneumothorax", "present"),
        ("inline_mentions[0]", "Pleural effusion", "absent"),
        ("inline_mentions[1]", "Cardiomegaly", "present"),
    ]
    assert "derived_labels" not in out  # not a report record
    assert record.get("entities") is None  # the input record is not mutated


def test_report_record_gets_entities_and_both_label_sets(stage):
    record = {
        "record_id": "r1",
        "indication": "?pneumonia",
        "findings": "Heart size is normal. No pneumothorax. Small left pleural effusion.",
        "impression": "Cannot exclude left lower lobe pneumonia.",
    }
    out = run_chain([stage], [record]).kept[0]
    labels = {d["observation"]: d["value"] for d in out["derived_labels"]}
    assert labels["Pleural Effusion"] == "positive"
    assert labels["Pneumothorax"] == "negative"
    assert labels["Pneumonia"] == "uncertain"
    assert labels["Cardiomegaly"] == "negative"
    assert labels["Fracture"] == "not_mentioned"
    assert labels["No Finding"] == "not_mentioned"
    assert labels["Effusion"] == "positive"
    # CheXpert's 14 (with No Finding) + the 8 ChestX-ray14 names CheXpert lacks, each once
    assert len(labels) == 14 + 8
    assert len(out["derived_labels"]) == 22
    assert {e["field"] for e in out["entities"]} == {"findings", "impression"}


def test_normal_report_is_no_finding_even_with_a_device(stage):
    record = {
        "findings": "Pacemaker in place. The lungs are clear. No effusion or pneumothorax.",
        "impression": "No acute cardiopulmonary abnormality.",
    }
    labels = {
        d["observation"]: d["value"] for d in next(iter(stage.process(record)))["derived_labels"]
    }
    assert labels["No Finding"] == "positive"
    assert labels["Support Devices"] == "positive"


def test_non_utf8_bytes_fail_the_record_with_a_named_reason(stage):
    result = run_chain([stage], [{"record_id": "bad", "caption": b"caf\xe9 effusion"}])
    assert result.kept == []
    assert [(f.reason, f.record_id) for f in result.failed] == [("not_utf8", "bad")]
    assert "field caption is not UTF-8" in result.failed[0].message
    assert result.counts["link"].balanced


def test_utf8_bytes_are_decoded_and_linked(stage):
    out = next(iter(stage.process({"caption": "Pleural effusion – left.".encode()})))
    assert [e["cui"] for e in out["entities"]] == ["C0032227"]


def test_lone_surrogates_are_not_utf8(stage):
    result = run_chain([stage], [{"caption": "effusion \udce9"}])
    assert [f.reason for f in result.failed] == ["not_utf8"]


def test_empty_and_missing_fields_give_empty_entities(stage):
    out = next(iter(stage.process({"record_id": "x", "caption": "", "inline_mentions": []})))
    assert out["entities"] == []


def test_huge_text_is_truncated_and_counted(lexicon_kb):
    stage = LinkStage(LinkConfig(enabled=True, kb=str(lexicon_kb)))
    stage.setup()
    limit = stage.linker.settings.max_chars_per_field
    text = "Pneumothorax. " + "x " * limit + " Cardiomegaly."
    out = next(iter(stage.process({"caption": text})))
    assert [e["name"] for e in out["entities"]] == ["Pneumothorax"]
    assert stage.stats["truncated_fields"] == 1


def test_huge_text_can_be_rejected_with_a_reason(lexicon_kb):
    stage = LinkStage(LinkConfig(enabled=True, kb=str(lexicon_kb), on_huge_text="reject"))
    result = run_chain([stage], [{"caption": "x " * 200_000}])
    assert [r.reason for r in result.rejected] == ["text_too_long_for_linking"]
    assert result.counts["link"].balanced


def test_describe_names_the_kb_hash_and_rule_versions(stage):
    info = stage.describe()
    assert info["kb_sha256"] == stage.kb_manifest["kb_sha256"]
    assert info["linker_rules"] == "linker.v1"
    assert info["assertion_rules"] == "assertion.v2"
    assert info["label_sets"] == ["chexpert14.v2", "chestxray14.v2"]


def test_kb_identity_reads_the_manifest_without_loading(lexicon_kb):
    identity = LinkStage(LinkConfig(enabled=True, kb=str(lexicon_kb))).kb_identity()
    assert identity["kb_id"].startswith("lexicon-")
    assert len(identity["kb_sha256"]) == 64


def test_config_rejects_unknown_keys_and_label_sets():
    with pytest.raises(ValueError, match="extra"):
        LinkConfig(enabled=True, knowledge_base="x")
    with pytest.raises(ValueError, match="unknown label set"):
        LinkConfig(label_sets=["mimic99"])


def test_report_sections_as_name_text_structs() -> None:
    # report_image.v1 keeps every section as {name, text}; each is linked under its own label.
    from curate.enrich.link.stage import iter_field_texts

    record = {
        "sections": [
            {"name": "findings", "text": "No pneumothorax."},
            {"name": "impression", "text": None},
            {"name": "indication", "text": "Cough."},
        ]
    }
    assert list(iter_field_texts(record, ["sections"])) == [
        ("sections.findings", "sections", "No pneumothorax."),
        ("sections.indication", "sections", "Cough."),
    ]
