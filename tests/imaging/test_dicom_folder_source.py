"""DicomFolderSource: 2D DICOM files (+ optional report CSV) -> report_image.v1 records."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from curate.errors import CurateError
from curate.parse.deid import find_leaks
from curate.schema import load_schema
from curate.sources.base import get_source_class
from curate.stages import Failed, Rejected

PHI = {
    "PatientName": "Flanders^Ned",
    "PatientID": "MRN31337",
    "InstitutionName": "Okily Dokily Care",
}


def write_cr(path, *, sop: str, burned: str = "NO") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop
    ds.StudyInstanceUID = "1.2.3.99"
    ds.Modality, ds.ViewPosition, ds.BurnedInAnnotation = "CR", "PA", burned
    for key, value in PHI.items():
        setattr(ds, key, value)
    ds.set_pixel_data(
        np.arange(24 * 20, dtype=np.uint16).reshape(24, 20),
        "MONOCHROME2",
        12,
        generate_instance_uid=False,
    )
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture()
def folder(tmp_path):
    write_cr(tmp_path / "a" / "one.dcm", sop="1.2.3.99.1")
    write_cr(tmp_path / "a" / "burned.dcm", sop="1.2.3.99.2", burned="YES")
    data = write_cr(tmp_path / "b" / "cut.dcm", sop="1.2.3.99.3")
    (tmp_path / "b" / "cut.dcm").write_bytes(data[: len(data) - 300])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "reports.csv").write_text(
        'file,report\na/one.dcm,"FINDINGS: No pneumothorax.\n\nIMPRESSION: Normal chest."\n'
    )
    return tmp_path


def run(folder, options):
    source = get_source_class("dicom_folder")(str(folder), options)
    kept, rejected, failed = [], [], []
    for unit in source.discover():
        try:
            for item in source.read(unit):
                (
                    rejected
                    if isinstance(item, Rejected)
                    else failed
                    if isinstance(item, Failed)
                    else kept
                ).append(item)
        except CurateError as exc:
            failed.append((unit.meta["rel"], exc.reason))
    return kept, rejected, failed


def test_folder_records(folder):
    kept, rejected, failed = run(folder, {"reports_csv": "reports.csv", "uid_salt": "demo"})
    assert failed == [("b/cut.dcm", "truncated_dicom")]
    assert [r.reason for r in rejected] == ["burned_in_annotation"]
    assert rejected[0].record["image"] is None
    assert len(kept) == 1
    record = kept[0]
    assert record["findings"] == "No pneumothorax."
    assert record["impression"] == "Normal chest."
    assert record["subject_id"].startswith("p-") and record["dicom_modality"] == "CR"
    assert record["view_position"] == "PA"
    pa.Table.from_pylist(kept, schema=load_schema("report_image.v1").arrow)
    assert find_leaks(record, list(PHI.values()) + ["1.2.3.99", "1.2.3.99.1"]) == []


def test_report_required(folder):
    kept, rejected, _ = run(folder, {"require_report": True, "reject_burned_in_annotation": False})
    assert kept == []
    assert sorted(r.reason for r in rejected) == ["report_missing", "report_missing"]
