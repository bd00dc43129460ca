"""CtRateSource on the generated CT-RATE-style demo: every input kept, rejected or failed."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from curate.demo.volumes import generate_volume_demo
from curate.errors import CurateError, MalformedMetadata
from curate.parse.deid import find_leaks
from curate.parse.volume import array_from_record
from curate.schema import load_schema
from curate.sources.base import get_source_class
from curate.stages import Failed, Rejected

SMALL = {"target_spacing": [1.6, 1.6, 4.0], "target_shape": [40, 40, 16]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_volume_demo(tmp_path_factory.mktemp("ctrate"))


def run_source(root, options):
    source = get_source_class("ct_rate")(root, options)
    kept, rejected, failed = {}, {}, {}
    units = list(source.discover())
    for unit in units:
        try:
            for item in source.read_published(unit):
                if isinstance(item, Rejected):
                    rejected[item.record["volume_name"]] = item.reason
                elif isinstance(item, Failed):
                    failed[unit.meta["volume_name"]] = item.reason
                else:
                    kept[item["volume_name"]] = item
        except CurateError as exc:  # the whole unit is unusable: the engine's dead letter
            failed[unit.meta["volume_name"]] = exc.reason
    return source, units, kept, rejected, failed


@pytest.fixture(scope="module")
def result(demo):
    return run_source(
        demo["root"],
        {
            "metadata_csv": "metadata.csv",
            "preprocess": SMALL,
            "uid_salt": "demo",
            "pseudonymise_paths": False,
        },
    )


def test_every_input_is_accounted_for(demo, result):
    source, units, kept, rejected, failed = result
    assert source.schema_ref == "volume.v1" and source.group_field == "subject_id"
    assert len(units) == 9 and len({u.unit_id for u in units}) == 9
    assert set(kept) == set(demo["kept"])
    assert rejected == demo["rejected"]
    assert failed == demo["errors"]


def test_kept_records_fit_the_schema(result):
    _, _, kept, _, _ = result
    schema = load_schema("volume.v1")
    table = pa.Table.from_pylist(list(kept.values()), schema=schema.arrow)
    assert table.num_rows == 5
    for record in kept.values():
        assert set(record) == set(schema.field_names)


def test_geometry_and_identity(demo, result):
    _, _, kept, _, _ = result
    for name, planted in demo["kept"].items():
        record = kept[name]
        assert record["shape"] == [40, 40, 16], name
        assert record["spacing"] == pytest.approx([1.6, 1.6, 4.0]), name
        assert record["orientation"] == "RAS"
        assert record["original_spacing"] == pytest.approx(list(planted["original_spacing"])), name
        assert record["original_shape"] == list(planted["original_shape"]), name
        assert record["source_split"] == planted["source_split"], name
        assert record["intensity_window"] == [-1000.0, 1000.0]
        assert array_from_record(record).shape == (40, 40, 16)
        if "subject_id" in planted:
            assert record["subject_id"] == planted["subject_id"]
    assert kept["train_1_a_1"]["subject_id"] == kept["train_1_a_2"]["subject_id"] == "train_1"
    assert kept["ct_series_ok"]["subject_id"].startswith("p-")
    assert kept["ct_series_ok"]["source_format"] == "dicom_series"
    assert kept["ct_series_ok"]["modality"] == "CT"
    assert kept["ct_series_ok"]["series_uid_hash"].startswith("2.25.")


def test_reports_are_paired(result):
    _, _, kept, _, _ = result
    record = kept["train_2_a_1"]
    assert record["findings"].startswith("Bilateral ground-glass opacities")
    assert record["impression"] == "Findings consistent with infection; cannot exclude pneumonia."
    assert record["report_text"].splitlines()[0] == "CLINICAL INFORMATION: Dyspnea."
    assert record["report_text"].splitlines()[-1].startswith("IMPRESSION: ")


def test_metadata_rescale_gives_hu(demo, result):
    _, _, kept, _, _ = result
    hu = array_from_record(kept["train_2_a_1"])
    assert int(hu.min()) == -1000  # air, clipped to the window
    _, _, raw_kept, _, _ = run_source(
        demo["root"], {"preprocess": SMALL, "pseudonymise_paths": False}
    )
    raw = array_from_record(raw_kept["train_2_a_1"])
    assert int(raw.min()) == -1000  # padding only ...
    assert int(np.median(raw)) > 0  # ... the voxels stayed as stored (HU + 1024)


def test_no_phi_in_series_records(demo, result):
    _, _, kept, _, _ = result
    record = kept["ct_series_ok"]
    needles = list(demo["series_phi"].values()) + [
        "1.2.826.0.1.3680043.8.498.1000",
        "curate-public",
    ]
    assert find_leaks(record, needles) == []
    metadata = json.loads(record["metadata_json"])
    assert metadata["study_date_shifted"] != demo["series_phi"]["StudyDate"]
    assert metadata["manufacturer"] == "CurateDemo"


def test_report_optional_when_not_required(demo):
    _, _, kept, rejected, _ = run_source(
        demo["root"], {"preprocess": SMALL, "require_report": False, "pseudonymise_paths": False}
    )
    assert rejected == {}
    assert kept["train_4_a_1"]["report_text"] is None


def test_missing_report_csv_column(tmp_path):
    (tmp_path / "reports.csv").write_text("Name,Findings_EN\nx,y\n")
    source = get_source_class("ct_rate")(str(tmp_path), {})
    with pytest.raises(MalformedMetadata):
        list(source.discover())


@pytest.mark.parametrize("reject", [True, False])
def test_a_series_with_burned_in_annotation_is_rejected_without_pixels(demo, tmp_path, reject):
    import shutil

    import pydicom

    root = tmp_path / "ct_rate"
    shutil.copytree(demo["root"], root)
    series = sorted((root / "series" / "ct_series_ok").glob("*.dcm"))
    marked = pydicom.dcmread(series[len(series) // 2])  # one slice is enough
    marked.BurnedInAnnotation = "YES"
    marked.save_as(series[len(series) // 2])
    options = {
        "preprocess": SMALL,
        "uid_salt": "demo",
        "pseudonymise_paths": False,
        "reject_burned_in_annotation": reject,
    }
    _, _, kept, rejected, _ = run_source(str(root), options)
    if reject:
        assert rejected["ct_series_ok"] == "burned_in_annotation" and "ct_series_ok" not in kept
    else:
        assert "ct_series_ok" in kept


def test_folder_and_file_names_never_reach_ids_by_default(tmp_path, demo):
    """Hospital exports name series folders after patients: with the default options no
    record, reject or unit id carries the folder or file name."""
    import shutil

    root = tmp_path / "export"
    shutil.copytree(demo["root"], root)
    patient_folder = "DOE_JOHN_19570312"
    series = [p for p in root.rglob("*") if p.is_dir() and any(p.glob("*.dcm"))]
    assert series, "the demo corpus has a DICOM series"
    series[0].rename(series[0].parent / patient_folder)
    source, units, kept, rejected, failed = run_source(str(root), {"preprocess": SMALL})
    assert len(kept) + len(rejected) + len(failed) >= 9
    assert not any(patient_folder in u.unit_id for u in units)
    names = set(kept) | set(rejected) | set(failed)
    assert all(name.startswith("v-") for name in names), names
    for record in kept.values():
        for column in ("record_id", "unit_id", "volume_name", "source_uri", "subject_id"):
            assert "train_" not in str(record[column]) and "DOE" not in str(record[column])
