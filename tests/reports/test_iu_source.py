"""IuXraySource: the demo CSV pair with images, and the whole real IU X-ray CSV (reports only)."""

from __future__ import annotations

import csv
from collections import Counter

import pyarrow as pa
import pytest

from curate.demo.radiology import generate_radiology_demo
from curate.errors import MalformedMetadata
from curate.schema import REJECT_COLUMNS, load_schema
from curate.sources.base import get_source_class
from curate.sources.iu_xray import IuXraySource
from curate.stages import Failed, Rejected


def run_source(source):
    records, rejected, failed, unit_errors = [], [], [], Counter()
    units = list(source.discover())
    for unit in units:
        try:
            for item in source.read(unit):
                if isinstance(item, Rejected):
                    rejected.append(item)
                elif isinstance(item, Failed):
                    failed.append(item)
                else:
                    records.append(item)
        except Exception as exc:  # noqa: BLE001
            unit_errors[getattr(exc, "reason", type(exc).__name__)] += 1
    return units, records, rejected, failed, unit_errors


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_radiology_demo(tmp_path_factory.mktemp("iu_demo"), seed=0)


def test_registered():
    cls = get_source_class("iu_xray")
    assert (cls.kind, cls.schema_ref, cls.group_field) == (
        "iu_xray",
        "report_image.v1",
        "subject_id",
    )


def test_demo_with_images(demo):
    planted = demo["iu_xray"]
    units, records, rejected, failed, unit_errors = run_source(IuXraySource(planted["path"]))
    assert len(units) == planted["reports"] == 4
    assert len(records) == planted["records_image_mode"] == 5
    assert rejected == []
    assert Counter(f.reason for f in failed) == planted["failed_images"]
    assert unit_errors == Counter(planted["unit_errors"])
    first = next(r for r in records if r["image_id"] == "1_IM-0001-4001")
    assert first["record_id"] == "iu_xray/1/1/1_IM-0001-4001"
    assert (first["subject_id"], first["study_id"], first["view_position"]) == ("1", "1", "FRONTAL")
    assert first["indication"] == "___-year-old male, chest pain."
    assert first["text_redaction_counts"] == [{"pattern": "source_placeholder", "count": 1}]
    assert first["phi_redacted"] is False
    assert (first["image_format"], first["image_width"], first["image_height"]) == ("PNG", 64, 64)
    assert first["image"][:8] == b"\x89PNG\r\n\x1a\n"
    schema = load_schema("report_image.v1")
    assert pa.Table.from_pylist(records, schema=schema.arrow).num_rows == 5


def test_demo_study_mode(demo):
    _, records, rejected, failed, _ = run_source(
        IuXraySource(demo["iu_xray"]["path"], {"record_mode": "study"})
    )
    assert [(r["study_id"], r["image_count"]) for r in records] == [("1", 2), ("2", 2), ("3", 1)]
    assert [i["view_position"] for i in records[0]["images"]] == ["FRONTAL", "LATERAL"]


def test_projection_without_report_is_loud(tmp_path):
    (tmp_path / "indiana_reports.csv").write_text(
        "uid,image,indication,comparison,findings,impression\n1,X,a,b,c,d\n"
    )
    (tmp_path / "indiana_projections.csv").write_text(
        "uid,filename,projection\n1,1_a.png,Frontal\n2,2_a.png,Frontal\n"
    )
    with pytest.raises(MalformedMetadata):
        list(IuXraySource(str(tmp_path)).discover())
    (tmp_path / "indiana_reports.csv").write_text("uid,findings\n1,a\n1,b\n")
    with pytest.raises(MalformedMetadata):
        list(IuXraySource(str(tmp_path), {"projections_csv": None}).discover())


@pytest.mark.realdata
def test_real_iu_csv_every_report_accounted_for(realdata):
    root = realdata / "reports/iu_xray"
    with open(root / "indiana_reports.csv", newline="", encoding="utf-8") as f:
        reports = list(csv.DictReader(f))
    with open(root / "indiana_projections.csv", newline="", encoding="utf-8") as f:
        projections = list(csv.DictReader(f))
    units, records, rejected, failed, unit_errors = run_source(IuXraySource(str(root)))
    text_cols = ("indication", "comparison", "findings", "impression")
    empty_uids = {r["uid"] for r in reports if not any(r[c].strip() for c in text_cols)}
    assert len(units) == len(reports) == 3851
    assert records == [] and failed == []
    # no image folder: every projection of a report with text is a text-only reject
    assert unit_errors == Counter({"empty_input": len(empty_uids)}) == Counter({"empty_input": 25})
    expected_rejects = sum(1 for p in projections if p["uid"] not in empty_uids)
    assert (
        Counter(r.reason for r in rejected)
        == {"image_missing": expected_rejects}
        == {"image_missing": 7426}
    )
    accounted = {r.record["study_id"] for r in rejected} | empty_uids
    assert accounted == {r["uid"] for r in reports}
    assert all("XXXX" not in r.record["report_text"] for r in rejected)
    uid1 = [r.record for r in rejected if r.record["study_id"] == "1"]
    assert [(r["image_id"], r["view_position"]) for r in uid1] == [
        ("1_IM-0001-4001", "FRONTAL"),
        ("1_IM-0001-3001", "LATERAL"),
    ]
    assert uid1[0]["impression"] == "Normal chest x-___."
    assert uid1[0]["findings"] == (
        "The cardiac silhouette and mediastinum size are within normal limits. There is no "
        "pulmonary edema. There is no focal consolidation. There are no ___ of a pleural effusion. "
        "There is no evidence of pneumothorax."
    )
    assert uid1[0]["text_redaction_counts"] == [{"pattern": "source_placeholder", "count": 2}]
    schema = load_schema("report_image.v1").extended(REJECT_COLUMNS, "rejects")
    rows = [
        {**r.record, "reason": r.reason, "reject_stage": r.stage, "duplicate_of": None}
        for r in rejected
    ]
    assert pa.Table.from_pylist(rows, schema=schema.arrow).num_rows == 7426
