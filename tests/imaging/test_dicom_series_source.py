"""The `dicom_series` source on a hospital-export-like folder: any layout, no reports.

The folder mixes a CT series split over two sub-folders (patient-named, as exports are), a
second series in one of them, an enhanced CT with two time points, a MOSAIC without a file
extension, a series with burned-in annotation, NIfTI files, a text file, a non-DICOM blob and a
broken `.dcm`. Every file must end as a record, a reject, an error or a skipped unit."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pyarrow as pa
import pytest
from _series_writers import write_enhanced_ct, write_mosaic

from curate.demo.volumes import ct_phantom, write_ct_series
from curate.errors import CurateError
from curate.parse.volume import array_from_record
from curate.schema import load_schema
from curate.sources.base import get_source_class
from curate.stages import Failed, Rejected

PATIENT_FOLDER = "DOE^JOHN_19570312"
CT_SHAPE, CT_SPACING, CT_ORIGIN = (20, 16, 10), (0.9, 0.8, 2.5), (-9.0, -6.4, -100.0)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    study = root / PATIENT_FOLDER / "CT_CHEST"
    ct = ct_phantom(CT_SHAPE, seed=11)
    paths = write_ct_series(
        study / "all", ct, spacing=CT_SPACING, origin=CT_ORIGIN,
        series_uid="1.2.826.0.1.3680043.8.498.9001", study_uid="1.2.826.0.1.3680043.8.498.9",
    )  # fmt: skip
    (study / "part2").mkdir()
    for path in paths[len(paths) // 2 :]:  # one series over two folders
        shutil.move(str(path), study / "part2" / path.name)
    second = write_ct_series(
        root / "tmp", ct_phantom((8, 8, 4), seed=12), spacing=(1.0, 1.0, 3.0),
        origin=(0.0, 0.0, 0.0), series_uid="1.2.826.0.1.3680043.8.498.9002",
        study_uid="1.2.826.0.1.3680043.8.498.9", seed=2,
    )  # fmt: skip
    for path in second:  # a second series in the same folder as part of the first
        shutil.move(str(path), study / "all" / f"B{path.name}")
    (root / "tmp").rmdir()
    (root / "ENH").mkdir()
    write_enhanced_ct(
        root / "ENH" / "enhanced.dcm", [ct_phantom((12, 10, 4), seed=s) for s in (1, 2)],
        spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
        series_uid="1.2.826.0.1.3680043.8.498.9003",
    )  # fmt: skip
    (root / "MOSAIC").mkdir()
    mosaic = np.random.default_rng(1).integers(0, 3000, (16, 12, 5)).astype(np.uint16)
    write_mosaic(
        root / "MOSAIC" / "IM0001", mosaic, spacing=(2.0, 2.0, 3.0),
        first_slice_corner=(0.0, 0.0, 0.0), series_uid="1.2.826.0.1.3680043.8.498.9004",
    )  # fmt: skip
    write_ct_series(
        root / "BURNED", ct_phantom((8, 8, 3), seed=13), spacing=(1.0, 1.0, 2.0),
        origin=(0.0, 0.0, 0.0), series_uid="1.2.826.0.1.3680043.8.498.9005",
        study_uid="1.2.826.0.1.3680043.8.498.9", seed=3,
    )  # fmt: skip
    import pydicom

    for path in (root / "BURNED").iterdir():
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "YES"
        ds.save_as(path)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    brain = np.arange(6 * 7 * 4, dtype=np.int16).reshape(6, 7, 4)
    nib.save(nib.Nifti1Image(brain, affine), root / "sub-01_T1w.nii.gz")
    nib.save(nib.Nifti1Image(brain, affine), root / "scan0001.nii.gz")
    (root / "README.txt").write_text("export notes")
    (root / "blob").write_bytes(b"\x00not dicom at all" * 20)
    (root / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")
    return root, ct, mosaic


def run(root, **options):
    source = get_source_class("dicom_series")(str(root), {"uid_salt": "demo", **options})
    units = list(source.discover())
    kept, rejected, failed, unit_errors = [], [], [], []
    for unit in units:
        if unit.skip_reason:
            continue
        try:
            for item in source.read(unit):
                if isinstance(item, Rejected):
                    rejected.append(item)
                elif isinstance(item, Failed):
                    failed.append(item)
                else:
                    kept.append(item)
        except CurateError as exc:
            unit_errors.append(exc.reason)
    return source, units, kept, rejected, failed, unit_errors


@pytest.fixture(scope="module")
def native(export):
    return run(export[0])


def by_storage(kept, storage):
    return [r for r in kept if r["storage"] == storage]


def test_every_file_is_accounted_for(native):
    source, units, kept, rejected, failed, unit_errors = native
    assert source.schema_ref == "volume.v2"
    skipped = sorted(u.skip_reason for u in units if u.skip_reason)
    assert skipped == ["not_dicom", "not_dicom"]  # README.txt, blob
    # broken.dcm: DICM magic and a cut-off element, read as an object without pixels
    assert unit_errors == []
    assert [(f.reason, f.source_uri.rsplit("/", 1)[-1]) for f in failed] == [
        ("missing_pixel_data", "broken.dcm")
    ]
    # CT (2 folders) + small CT + enhanced x2 + MOSAIC + NIfTI x2
    assert len(kept) == 7
    assert [r.reason for r in rejected] == ["burned_in_annotation"]
    assert rejected[0].record["array"] is None  # no pixels of a burned-in series anywhere


def test_records_fit_volume_v2(native):
    kept = native[2]
    schema = load_schema("volume.v2")
    table = pa.Table.from_pylist(kept, schema=schema.arrow)
    assert table.num_rows == len(kept)
    for record in kept:
        assert set(record) == set(schema.field_names)


def test_series_over_two_folders_is_one_native_volume(native, export):
    _, ct, _ = export
    (record,) = [r for r in native[2] if r["shape"] == list(CT_SHAPE)]
    assert record["dtype"] == "int16"  # native preset: HU exactly, smallest integer type
    assert np.array_equal(array_from_record(record), ct[::-1, ::-1, :].astype(np.int16))
    assert record["spacing"] == pytest.approx(list(CT_SPACING))
    assert record["padding_fraction"] == 0.0 and record["preprocess_warnings"] == []
    assert record["intensity_window"] is None and record["preset"] == "native"
    assert record["modality"] == "CT" and record["modality_source"] == "dicom_header"
    assert record["storage"] == "single_frame" and record["gantry_tilt_deg"] == 0.0


def test_enhanced_time_points_are_two_records(native):
    records = sorted(by_storage(native[2], "enhanced_multiframe"), key=lambda r: r["volume_index"])
    assert [r["volume_index"] for r in records] == [0, 1]
    assert {r["volumes_in_series"] for r in records} == {2}
    assert len({r["record_id"] for r in records}) == 2
    assert records[0]["image_sha256"] != records[1]["image_sha256"]


def test_mosaic_without_extension_is_found(native, export):
    (record,) = by_storage(native[2], "mosaic")
    assert record["modality"] == "MR" and record["shape"] == [16, 12, 5]
    assert np.array_equal(array_from_record(record), export[2][::-1, ::-1, :])


def test_nifti_modality_from_file_name_or_spec(native, export):
    nifti = {r["source_uri"].rsplit("/", 1)[-1]: r for r in by_storage(native[2], "nifti")}
    assert nifti["sub-01_T1w.nii.gz"]["modality"] == "MR"
    assert nifti["sub-01_T1w.nii.gz"]["modality_source"] == "file_name"
    assert nifti["scan0001.nii.gz"]["modality"] is None  # unknown stays unknown, never "CT"
    declared = run(export[0], modality="CT")[2]
    assert {r["modality_source"] for r in by_storage(declared, "nifti")} == {"spec"}


def test_ids_never_carry_folder_or_file_names(native):
    source, units, kept, rejected, _, _ = native
    texts = [u.unit_id for u in units] + [
        str(r[k]) for r in kept + [x.record for x in rejected] for k in ("record_id", "volume_name")
    ]
    for text in texts:
        for secret in ("DOE", "JOHN", "19570312", "CT_CHEST", "T1w", "scan0001", "BURNED"):
            assert secret not in text, text
    # the engine passes every output through path_privacy: URIs lose the names too
    record = dict(kept[0])
    source.path_privacy.record(record)
    assert "DOE" not in record["source_uri"]


def test_ct_clip_preset_pads_and_warns(export):
    kept = run(export[0], preset="ct_clip")[2]
    (record,) = [r for r in kept if r["original_shape"] == list(CT_SHAPE)]
    assert record["shape"] == [480, 480, 240] and record["dtype"] == "int16"
    assert record["preset"] == "ct_clip" and record["intensity_window"] == [-1000.0, 1000.0]
    assert record["padding_fraction"] > 0.99
    assert record["preprocess_warnings"] == ["padding_above_limit"]


def test_preset_values_can_be_overridden(export):
    kept = run(export[0], preset="ct_clip", preprocess={"target_shape": None})[2]
    (record,) = [r for r in kept if r["original_shape"] == list(CT_SHAPE)]
    assert record["padding_fraction"] == 0.0 and record["preprocess_warnings"] == []
    assert record["spacing"] == pytest.approx([0.75, 0.75, 1.5])


def test_identical_series_share_the_image_digest(tmp_path):
    ct = ct_phantom((8, 8, 4), seed=21)
    for index in (1, 2):  # the same scan exported twice, under two series UIDs
        write_ct_series(
            tmp_path / f"copy{index}", ct, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
            series_uid=f"1.2.826.0.1.3680043.8.498.95{index}", study_uid="1.2.826.0.1.3",
        )  # fmt: skip
    kept = run(tmp_path)[2]
    assert len(kept) == 2 and kept[0]["record_id"] != kept[1]["record_id"]
    assert kept[0]["image_sha256"] == kept[1]["image_sha256"]  # exact dedup keys on it


def test_refusing_tilt_is_an_option(export):
    source = get_source_class("dicom_series")(
        str(export[0]), {"uid_salt": "demo", "series": {"gantry_tilt": "refuse"}}
    )
    assert source.options.series.gantry_tilt == "refuse"
    default = get_source_class("dicom_series")(str(export[0]), {"uid_salt": "demo"})
    assert default.options.series.gantry_tilt == "resample"
