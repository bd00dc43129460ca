"""MimicCxrSource over the generated MIMIC-CXR-style demo tree: exact accounting, sections,
DICOM transfer syntaxes, splits, labels, bad inputs, and schema conformance."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from curate.demo.radiology import generate_radiology_demo
from curate.schema import REJECT_COLUMNS, load_schema
from curate.sources.base import Unit, available_sources, get_source_class
from curate.sources.mimic_cxr import MimicCxrSource
from curate.stages import Failed, Rejected


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    return generate_radiology_demo(tmp_path_factory.mktemp("radiology_demo"), seed=0)


def run_source(source):
    records, rejected, failed, unit_errors = [], [], [], Counter()
    units = list(source.discover())
    for unit in units:
        roundtrip = Unit.from_dict(unit.as_dict())  # units travel as JSON between phases
        try:
            for item in source.read(roundtrip):
                if isinstance(item, Rejected):
                    rejected.append(item)
                elif isinstance(item, Failed):
                    failed.append(item)
                else:
                    records.append(item)
        except Exception as exc:  # noqa: BLE001 - a whole-unit failure is a dead letter too
            unit_errors[getattr(exc, "reason", type(exc).__name__)] += 1
    return units, records, rejected, failed, unit_errors


@pytest.fixture(scope="module")
def image_run(demo):
    return run_source(MimicCxrSource(demo["mimic_cxr"]["path"]))


@pytest.fixture(scope="module")
def study_run(demo):
    return run_source(MimicCxrSource(demo["mimic_cxr"]["path"], {"record_mode": "study"}))


def test_registered():
    assert "mimic_cxr" in available_sources()
    cls = get_source_class("mimic_cxr")
    assert (cls.kind, cls.schema_ref, cls.group_field) == (
        "mimic_cxr",
        "report_image.v1",
        "subject_id",
    )


def test_image_mode_accounting_is_exact(demo, image_run):
    planted = demo["mimic_cxr"]
    units, records, rejected, failed, unit_errors = image_run
    assert len(units) == planted["studies"] == 14
    assert len(records) == planted["records_image_mode"] == 13
    assert Counter(r.reason for r in rejected) == planted["rejected_image_mode"]
    assert Counter(f.reason for f in failed) == planted["failed_images"]
    assert unit_errors == Counter(planted["unit_errors"])
    assert len({r["record_id"] for r in records}) == 13
    assert [u.unit_id for u in units] == [
        u.unit_id for u in MimicCxrSource(planted["path"]).discover()
    ]


def test_study_mode_accounting_and_image_order(demo, study_run):
    planted = demo["mimic_cxr"]
    _, records, rejected, failed, unit_errors = study_run
    assert len(records) == planted["records_study_mode"] == 10
    assert Counter(r.reason for r in rejected) == planted["rejected_study_mode"]
    assert Counter(f.reason for f in failed) == planted["failed_images"]
    assert unit_errors == Counter(planted["unit_errors"])
    by_study = {r["study_id"]: r for r in records}
    first = by_study["50000001"]
    assert first["record_mode"] == "study" and first["image"] is None and first["image_id"] is None
    assert [(i["image_id"], i["view_position"]) for i in first["images"]] == [
        ("d01a", "PA"),
        ("d01b", "LATERAL"),
    ]
    assert first["image_count"] == 2
    # the burned-in image of study 6 is left out of the study and rejected on its own, without pixels
    assert [i["image_id"] for i in by_study["50000006"]["images"]] == ["d06b"]
    burned = next(r for r in rejected if r.reason == "burned_in_annotation")
    assert (burned.record["image_id"], burned.record["image"]) == ("d06a", None)
    # the study with one missing file keeps the image that exists
    assert [i["image_id"] for i in by_study["50000010"]["images"]] == ["j10a"]


def test_transfer_syntaxes_photometric_and_image_columns(image_run):
    _, records, *_ = image_run
    by_id = {r["image_id"]: r for r in records}
    assert {by_id[i]["transfer_syntax"] for i in ("d01a", "d01b", "d02a", "d03a", "d04a")} == {
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.50",
    }
    assert by_id["d05a"]["photometric_interpretation"] == "MONOCHROME1"
    for image_id in ("d01a", "d05a"):
        record = by_id[image_id]
        assert record["image"][:8] == b"\x89PNG\r\n\x1a\n"
        assert (record["image_format"], record["image_source_format"]) == ("PNG", "DICOM")
        assert (record["image_width"], record["image_height"], record["bit_depth"]) == (80, 96, 8)
        assert record["pixel_spacing"] == [0.139, 0.139]
        assert (record["dicom_modality"], record["body_part"], record["modality"]) == (
            "CR",
            "CHEST",
            "x-ray",
        )
        assert record["burned_in_annotation"] == "NO"
    jpg = by_id["j08a"]
    assert (jpg["image_format"], jpg["image_source_format"], jpg["transfer_syntax"]) == (
        "JPEG",
        "JPEG",
        None,
    )
    assert jpg["image"][:3] == b"\xff\xd8\xff"
    import hashlib

    assert jpg["image_sha256"] == hashlib.sha256(jpg["image"]).hexdigest()


def test_dicom_phi_does_not_reach_the_record(demo, image_run):
    _, records, *_ = image_run
    record = next(r for r in records if r["image_id"] == "d07a")
    blob = repr({k: v for k, v in record.items() if k != "image"}).encode() + record["image"]
    for value in demo["mimic_cxr"]["phi_dicom"].values():
        assert value.encode() not in blob
        assert value.split("^")[0].encode() not in blob


def test_report_sections_and_quirks_in_records(image_run):
    _, records, *_ = image_run
    by_study = {r["study_id"]: r for r in records}
    typos = by_study["50000003"]
    assert [s["name"] for s in typos["sections"]] == [
        "indication",
        "comparison",
        "findings",
        "impression",
    ]
    assert typos["indication"] == "History: ___M with shortness of breath"
    assert (
        typos["findings"]
        == "Moderate cardiomegaly is unchanged. Mild interstitial edema has slightly improved."
    )
    addendum = by_study["50000002"]
    assert addendum["sections"][0] == {
        "name": "addendum",
        "text": "Findings were discussed with Dr. ___ by telephone at 4:10 p.m. on ___, at the time of the addendum.",
    }
    assert (
        by_study["50000004"]["impression"]
        == "Lungs are clear. Heart size is normal. No acute cardiopulmonary process."
    )
    assert by_study["50000004"]["findings"] is None
    no_headers = by_study["50000005"]
    assert no_headers["has_sections"] is False
    assert no_headers["sections"] == [
        {
            "name": "text",
            "text": (
                "PA and lateral chest radiographs were obtained. The lungs are well expanded and clear. "
                "There is no effusion. Normal cardiomediastinal silhouette."
            ),
        }
    ]
    wet = by_study["50000008"]
    assert [s["name"] for s in wet["sections"]] == [
        "wet_read",
        "examination",
        "history",
        "portable_upright_view",
        "findings",
        "impression",
        "recommendation",
    ]
    assert wet["report_flags"] == ["wet_read", "unknown_header:portable_upright_view"]
    assert addendum["report_flags"] == ["addendum"]
    assert typos["report_flags"] == []
    # MIMIC is de-identified upstream: no redaction, `___` kept
    assert all(r["phi_redacted"] is False and r["text_redaction_counts"] == [] for r in records)
    assert by_study["50000001"]["comparison"] == "___"


def test_official_split_and_labels(image_run, study_run):
    _, records, *_ = image_run
    splits = {(r["subject_id"], r["split"]) for r in records}
    assert splits == {
        ("10000001", "train"),
        ("10000002", "train"),
        ("10000003", "validation"),
        ("10000004", "test"),
        ("10000006", "train"),
        ("10000008", "train"),
    }
    by_study = {r["study_id"]: r for r in records}
    labels = {d["observation"]: d["value"] for d in by_study["50000008"]["labels"]}
    assert len(labels) == 14
    assert (labels["Pleural Effusion"], labels["Atelectasis"], labels["Edema"]) == (
        "positive",
        "uncertain",
        "not_mentioned",
    )
    assert by_study["50000001"]["label_source"] == "chexpert"
    assert {d["observation"]: d["value"] for d in by_study["50000001"]["labels"]}[
        "Pleural Effusion"
    ] == "negative"
    assert by_study["50000002"]["labels"] is None
    assert {r["split"] for r in study_run[1]} == {"train", "validation", "test"}


def test_records_and_rejects_fit_the_arrow_schema(image_run, study_run):
    schema = load_schema("report_image.v1")
    for _, records, rejected, *_ in (image_run, study_run):
        table = pa.Table.from_pylist(records, schema=schema.arrow)
        assert table.num_rows == len(records)
        rejects = schema.extended(REJECT_COLUMNS, "rejects")
        rows = [
            {**r.record, "reason": r.reason, "reject_stage": r.stage, "duplicate_of": None}
            for r in rejected
        ]
        assert pa.Table.from_pylist(rows, schema=rejects.arrow).num_rows == len(rejected)
        assert all(set(r) == set(schema.field_names) for r in records)


def test_options_separate_reports_root_plain_csv_no_labels_and_keep_burned_in(demo, tmp_path):
    src = Path(demo["mimic_cxr"]["path"])
    images_root = tmp_path / "images"
    reports_root = tmp_path / "reports"
    shutil.copytree(src, images_root)
    for txt in list((images_root / "files").rglob("*.txt")):
        target = reports_root / "files" / txt.relative_to(images_root / "files")
        target.parent.mkdir(parents=True, exist_ok=True)
        txt.rename(target)
    gz = images_root / "mimic-cxr-2.0.0-metadata.csv.gz"
    (images_root / "meta.csv").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    source = MimicCxrSource(
        str(images_root),
        {
            "reports_root": str(reports_root),
            "metadata_csv": "meta.csv",
            "labels_csv": None,
            "split_csv": None,
            "reject_burned_in_annotation": False,
        },
    )
    _, records, rejected, failed, unit_errors = run_source(source)
    assert len(records) == 14  # the burned-in image is kept when the option is off
    assert Counter(r.reason for r in rejected) == {"image_missing": 1}
    assert all(r["labels"] is None and r["split"] is None for r in records)
    assert next(r for r in records if r["image_id"] == "d06a")["burned_in_annotation"] == "YES"
    assert unit_errors == Counter({"not_utf8": 1, "empty_input": 1, "missing_file": 1})


def test_jpg_only_preference_and_reports_only_tree(demo, tmp_path):
    source = MimicCxrSource(demo["mimic_cxr"]["path"], {"image_format": "jpg"})
    _, records, rejected, failed, _ = run_source(source)
    assert {r["image_source_format"] for r in records} == {"JPEG"}
    assert (
        len(failed) == 10
    )  # the 9 metadata rows whose only file is DICOM, plus the planted missing one
    # a reports-only download: every metadata row becomes a text-only reject, nothing fails
    reports_only = tmp_path / "reports_only"
    shutil.copytree(
        demo["mimic_cxr"]["path"], reports_only, ignore=shutil.ignore_patterns("*.dcm", "*.jpg")
    )
    _, records, rejected, failed, unit_errors = run_source(MimicCxrSource(str(reports_only)))
    assert records == [] and failed == []
    # 15 metadata rows of the 10 studies with a readable report, plus the study without images
    assert Counter(r.reason for r in rejected) == {"image_missing": 16}
    assert unit_errors == Counter({"not_utf8": 1, "empty_input": 1, "missing_file": 1})
    assert all(r.record["image"] is None and r.record["sections"] for r in rejected)


def _tiny_tree(root: Path, *, split_rows: str | None = None, label_rows: str | None = None) -> Path:
    study = root / "files" / "p10" / "p10000009" / "s50000099"
    study.mkdir(parents=True)
    (study.parent / "s50000099.txt").write_text(" FINDINGS:  Clear lungs.\n")
    (study / "bad1.dcm").write_bytes(b"this is not a DICOM file at all" * 10)
    from PIL import Image

    Image.new("L", (20, 30), 128).save(study / "ok1.jpg", format="JPEG")
    if split_rows is not None:
        (root / "mimic-cxr-2.0.0-split.csv").write_text(
            "dicom_id,study_id,subject_id,split\n" + split_rows
        )
    if label_rows is not None:
        (root / "mimic-cxr-2.0.0-chexpert.csv").write_text(
            "subject_id,study_id,Edema\n" + label_rows
        )
    return root


def test_unreadable_dicom_is_one_dead_letter_and_files_without_metadata_are_used(tmp_path):
    root = _tiny_tree(tmp_path)
    units, records, rejected, failed, unit_errors = run_source(MimicCxrSource(str(root)))
    assert len(units) == 1 and not unit_errors and not rejected
    assert [r["image_id"] for r in records] == ["ok1"]
    assert (records[0]["image_width"], records[0]["image_height"]) == (20, 30)
    assert [(f.reason, f.record_id) for f in failed] == [
        ("not_dicom", "mimic_cxr/10000009/50000099/bad1")
    ]


def test_inconsistent_study_split_fails_the_study_in_study_mode(tmp_path):
    root = _tiny_tree(
        tmp_path, split_rows="bad1,50000099,10000009,train\nok1,50000099,10000009,test\n"
    )
    _, records, _, failed, unit_errors = run_source(
        MimicCxrSource(str(root), {"record_mode": "study"})
    )
    assert records == [] and failed == [] and unit_errors == Counter({"malformed_metadata": 1})
    # image mode keeps each image's own split
    _, records, *_ = run_source(MimicCxrSource(str(root)))
    assert [(r["image_id"], r["split"]) for r in records] == [("ok1", "test")]


@pytest.mark.parametrize(
    ("split_rows", "label_rows"),
    [("ok1,50000099,10000009,holdout\n", None), (None, "10000009,50000099,2.0\n")],
)
def test_bad_split_or_label_values_are_loud(tmp_path, split_rows, label_rows):
    from curate.errors import MalformedMetadata

    root = _tiny_tree(tmp_path, split_rows=split_rows, label_rows=label_rows)
    with pytest.raises(MalformedMetadata):
        list(MimicCxrSource(str(root)).discover())


def test_metadata_csv_problems_are_loud(tmp_path):
    from curate.errors import MalformedMetadata, MissingFile

    root = _tiny_tree(tmp_path)
    (root / "meta.csv").write_text("dicom_id,subject_id\nok1,10000009\n")
    with pytest.raises(MalformedMetadata):
        list(MimicCxrSource(str(root), {"metadata_csv": "meta.csv"}).discover())
    (root / "meta.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(MalformedMetadata):
        list(MimicCxrSource(str(root), {"metadata_csv": "meta.csv.gz"}).discover())
    with pytest.raises(MissingFile):
        list(MimicCxrSource(str(root), {"metadata_csv": "nope.csv"}).discover())


@pytest.mark.realdata
def test_label_values_of_the_real_chexpert_labeler_output(realdata):
    import csv

    from curate.sources.radiology import label_structs

    path = realdata / "reports/chexpert_labeler/labeled_reports.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        observations = [c for c in reader.fieldnames if c != "Reports"]
        rows = [label_structs(row, observations, str(path)) for row in reader]
    assert len(rows) == 4 and all(len(r) == 14 for r in rows)
    mentioned = [
        {d["observation"]: d["value"] for d in r if d["value"] != "not_mentioned"} for r in rows
    ]
    assert mentioned == [
        {
            "No Finding": "positive",
            "Cardiomegaly": "negative",
            "Edema": "negative",
            "Pneumonia": "negative",
            "Pleural Effusion": "negative",
        },
        {
            "Cardiomegaly": "positive",
            "Edema": "negative",
            "Atelectasis": "positive",
            "Pleural Effusion": "positive",
        },
        {"Lung Opacity": "positive", "Consolidation": "uncertain", "Atelectasis": "uncertain"},
        {"Cardiomegaly": "positive"},
    ]
