"""`record_mode: report`: a report corpus read without images, every report accounted for,
and labelled by `curate build` (issue 15: reports without images could not be labelled)."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pytest
import yaml

from curate.demo.radiology import generate_radiology_demo
from curate.schema import load_schema
from curate.sources.iu_xray import IuXraySource
from curate.sources.mimic_cxr import MimicCxrSource
from curate.stages import Failed, Rejected

IMAGE_COLUMNS = ("image", "image_id", "image_sha256", "image_uri", "images", "view_position")


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
        except Exception as exc:  # noqa: BLE001 - the engine turns these into unit errors
            unit_errors[getattr(exc, "reason", type(exc).__name__)] += 1
    return units, records, rejected, failed, unit_errors


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_radiology_demo(tmp_path_factory.mktemp("reports_only"), seed=0)


def check_report_records(records: list[dict]) -> None:
    assert records
    for record in records:
        assert record["record_mode"] == "report"
        assert record["image_count"] == 0
        assert all(record[c] is None for c in IMAGE_COLUMNS), record["record_id"]
        assert (
            record["record_id"]
            == f"{record['dataset']}/{record['subject_id']}/{record['study_id']}"
        )
    assert len({r["record_id"] for r in records}) == len(records)
    schema = load_schema("report_image.v1")
    assert pa.Table.from_pylist(records, schema=schema.arrow).num_rows == len(records)


def test_iu_report_mode_keeps_one_record_per_report_and_reads_no_image(demo):
    planted = demo["iu_xray"]
    units, records, rejected, failed, unit_errors = run_source(
        IuXraySource(planted["path"], {"record_mode": "report"})
    )
    # the same reports as in image mode, one record each; the missing image is no error here
    assert unit_errors == Counter(planted["unit_errors"])
    assert len(records) == len(units) - sum(unit_errors.values()) == planted["reports"] - 1
    assert rejected == [] and failed == []
    check_report_records(records)
    assert all(r["findings"] or r["impression"] or r["indication"] for r in records)


def test_iu_report_mode_needs_no_image_folder(tmp_path):
    (tmp_path / "indiana_reports.csv").write_text(
        "uid,image,indication,comparison,findings,impression\n"
        "1,Chest,Cough,None,Heart size XXXX enlarged.,Cardiomegaly.\n"
        "2,Chest,,,,\n"
    )
    (tmp_path / "indiana_projections.csv").write_text(
        "uid,filename,projection\n1,1_a.png,Frontal\n2,2_a.png,Frontal\n"
    )
    source = IuXraySource(str(tmp_path), {"record_mode": "report", "images_dir": "absent"})
    units, records, rejected, failed, unit_errors = run_source(source)
    assert len(units) == 2
    assert [r["study_id"] for r in records] == ["1"]
    assert records[0]["findings"] == "Heart size ___ enlarged."
    assert unit_errors == Counter({"empty_input": 1})  # still accounted, with its reason
    assert rejected == [] and failed == []


def test_mimic_report_mode_keeps_reports_and_accounts_studies_without_one(demo):
    planted = demo["mimic_cxr"]
    units, records, rejected, failed, unit_errors = run_source(
        MimicCxrSource(planted["path"], {"record_mode": "report"})
    )
    # unreadable, empty and missing reports stay errors with their reasons; no image is read,
    # so neither burned-in nor missing images appear
    assert unit_errors == Counter(planted["unit_errors"])
    assert len(records) == len(units) - sum(unit_errors.values())
    assert rejected == [] and failed == []
    check_report_records(records)
    labelled = [r for r in records if r["labels"]]
    assert labelled and all(r["label_source"] == "chexpert" for r in labelled)


@pytest.mark.realdata
def test_real_iu_reports_only_every_report_accounted(realdata):
    units, records, rejected, failed, unit_errors = run_source(
        IuXraySource(str(realdata / "reports" / "iu_xray"), {"record_mode": "report"})
    )
    assert len(units) == 3851
    assert unit_errors == Counter({"empty_input": 25})
    assert len(records) == 3851 - 25
    assert rejected == [] and failed == []
    check_report_records(records)


@pytest.mark.slow
def test_build_labels_a_reports_only_corpus(demo, tmp_path):
    """`curate build` on IU reports without images: kept records carry derived_labels and the
    manifest's accounting holds."""
    from curate.cli import main
    from curate.enrich.link.index import build_kb_folder
    from curate.enrich.link.kb import build_from_lexicon
    from curate.enrich.link.linker import LinkerSettings

    kb = tmp_path / "kb"
    build_kb_folder(
        build_from_lexicon(),
        kb,
        params=LinkerSettings.load().index_params(),
        sources=[{"kind": "lexicon"}],
        name="lexicon",
    )
    spec = {
        "name": "iu_reports_only",
        "schema": "report_image.v1",
        "sources": [
            {
                "kind": "iu_xray",
                "name": "iu",
                "path": demo["iu_xray"]["path"],
                "options": {"record_mode": "report"},
            }
        ],
        "rules": [],
        "enrich": {"link": {"enabled": True, "kb": str(kb)}},
        "split": {"seed": 0, "ratios": {"train": 0.5, "validation": 0.25, "test": 0.25}},
        "max_error_fraction": 0.5,
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    argv = ["build", "--spec", str(spec_path), "--out", str(out), "--running-mode", "in_memory"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(i["holds"] for i in manifest["identities"]), manifest["identities"]
    assert manifest["records"]["kept"] == demo["iu_xray"]["reports"] - 1
    assert manifest["error_reasons"] == {"empty_input": 1}
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for p in sorted((out / "shards").rglob("*.parquet"))]
    rows = pa.concat_tables(tables).to_pylist()
    assert {r["record_mode"] for r in rows} == {"report"}
    assert all(r["derived_labels"] for r in rows)
    assert all(r["image"] is None for r in rows)
    observations = {d["observation"] for r in rows for d in r["derived_labels"]}
    assert {"No Finding", "Cardiomegaly", "Nodule"} <= observations
