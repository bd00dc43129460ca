"""Every real series in ../shared/realdata that dcm2niix turns into a volume converts here too.

Candidates are what a user points curate at: each multi-frame or MOSAIC object on its own
(it is self-contained), and the classic single-frame files of one folder grouped by
SeriesInstanceUID. dcm2niix runs on the same bytes (gzip-wrapped files unwrapped, as dcm2niix
cannot read them). A dcm2niix output with 2 or more slices and no geometry warning is the
reference: shape, affine (1e-3 mm) and every voxel must equal ours after nibabel's RAS+
reorientation, one reference volume per 3D volume (4D outputs split along t).

Where dcm2niix converts but says its geometry is guessed or the stack is irregular, or where
its output is wrong, the case is listed in `DIFFERENT` with why, and this test checks what we
do instead (a named reason, or the part that is right). A new realdata series that fits
neither list fails `test_every_candidate_is_accounted_for`. Single-slice outputs are 2D images
(the `dicom_folder` source's job), not volumes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from curate.errors import InputError
from curate.parse.dicom import maybe_gunzip, read_dataset
from curate.parse.volume import SeriesOptions, series_volumes

DCM2NIIX = shutil.which("dcm2niix")
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix is not installed"),
]
SALT = "dcm2niix-conformance-salt"
# dcm2niix says these when the geometry it writes is invented or the stack is not regular.
GEOMETRY_WARNINGS = (
    "unable to determine spatial orientation",
    "interslice distance varies",
    "orientation varies",
    "gantry tilt",
    "unable to determine slice thickness",
)

# name -> (what we do, why dcm2niix's output is not the reference)
DIFFERENT: dict[str, tuple[str, str]] = {
    "nibabel/0.dcm": (
        "mosaic_grid_mismatch",
        "256x256 mosaic of 48 images: 256 is not a multiple of the 7-tile grid (a resized "
        "test file); nibabel's reader refuses it, dcm2niix's slices past the first tile row "
        "match no tile",
    ),
    "nibabel/1.dcm": ("mosaic_grid_mismatch", "as nibabel/0.dcm"),
    "highdicom/sm_image.dcm": (
        "missing_geometry",
        "whole-slide microscopy tiles have no patient position; dcm2niix invents one",
    ),
    "pydicom_data/emri_small.dcm": (
        "missing_geometry",
        "enhanced MR test file without functional groups; dcm2niix: orientation missing",
    ),
    "pydicom_data/emri_small_big_endian.dcm": ("missing_geometry", "as emri_small.dcm"),
    "pydicom_data/emri_small_jpeg_2k_lossless.dcm": ("missing_geometry", "as emri_small.dcm"),
    "pydicom/SC_rgb_rle_2frame.dcm": (
        "multi_frame_without_geometry",
        "two RGB secondary-capture frames, no positions; dcm2niix: orientation missing",
    ),
    "pydicom/SC_rgb_rle_32bit_2frame.dcm": ("multi_frame_without_geometry", "as above"),
    "pydicom_data/OBXXXX1A_2frame.dcm": (
        "multi_frame_without_geometry",
        "ultrasound cine frames; dcm2niix: orientation missing",
    ),
    "pydicom_data/OBXXXX1A_expb_2frame.dcm": ("multi_frame_without_geometry", "as above"),
    "pydicom_data/OBXXXX1A_rle_2frame.dcm": ("multi_frame_without_geometry", "as above"),
    "pydicom/SC_rgb_dcmtk_+eb+cr.dcm": (
        "missing_geometry",
        "copies of one 3x3 RGB image in 20 syntaxes share a series UID; dcm2niix stacks two "
        "of them without orientation",
    ),
    "pydicom/dicomdirtests/77654033/CT2/17106": (
        "missing_slices",
        "4 slices with gaps of 2.5 to 202.5 mm: dcm2niix warns the interslice distance varies "
        "(incompatible with NIfTI) and writes an equalised copy",
    ),
    "pydicom/dicomdirtests/98892001/CT2N/6293": (
        "inconsistent_series",
        "a two-image LOCALIZER whose images have different orientations; dcm2niix stacks them "
        "as a 45 degree tilt",
    ),
    "pydicom/rtdose.dcm": (
        "voxels",
        "RT dose frames are GridFrameOffsetVector mm apart (5 mm); dcm2niix ignores the vector "
        "and writes 1 mm ('unable to determine slice thickness'); voxels and in-plane geometry "
        "agree",
    ),
    "pydicom/rtdose_expb.dcm": ("voxels", "as rtdose.dcm"),
    "pydicom/rtdose_rle.dcm": (
        "same_as:pydicom/rtdose.dcm",
        "dcm2niix's 32-bit RLE decoding ('decompression is new') differs from its own decoding "
        "of the uncompressed copy; ours of the RLE copy equals ours of the uncompressed one",
    ),
}


@dataclass
class Case:
    name: str
    files: list[Path]
    references: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    volumes: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def candidates(root: Path) -> list[Case]:
    singles: dict[tuple[Path, str], list[Path]] = {}
    cases = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            ds, _ = read_dataset(path.read_bytes(), stop_before_pixels=True)
        except InputError:
            continue
        image_type = [str(v).upper() for v in ds.get("ImageType") or []]
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "MOSAIC" in image_type:
            cases.append(Case(str(path.relative_to(root)), [path]))
        else:
            key = (path.parent, str(ds.get("SeriesInstanceUID", "") or ""))
            singles.setdefault(key, []).append(path)
    for files in singles.values():
        if len(files) >= 2:
            cases.append(Case(str(files[0].relative_to(root)), files))
    return cases


def run_dcm2niix(case: Case, tmp: Path) -> None:
    source, out = tmp / "in", tmp / "out"
    source.mkdir()
    out.mkdir()
    for index, path in enumerate(case.files):
        (source / f"f{index:04d}.dcm").write_bytes(maybe_gunzip(path.read_bytes()))
    result = subprocess.run(
        [DCM2NIIX, "-z", "n", "-f", "ref", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    text = result.stdout.lower()
    case.warnings = [w for w in GEOMETRY_WARNINGS if w in text]
    for nifti in sorted(out.glob("*.nii")):
        if "_tilt" in nifti.name.lower() or nifti.name.lower().endswith("_eq.nii"):
            continue
        written = nib.load(str(nifti))
        if written.get_data_dtype().names is not None or len(written.shape) < 3:
            continue  # RGB outputs are structured arrays: never volumes here
        if written.shape[2] < 2:
            continue  # one slice: a 2D image (reorientation may move its axis, so test here)
        image = nib.as_closest_canonical(written)
        data = np.asarray(image.dataobj, dtype=np.float32)
        stack = [data] if data.ndim == 3 else [data[..., t] for t in range(data.shape[3])]
        case.references += [(volume, image.affine) for volume in stack]


def run_ours(case: Case) -> None:
    items = [(str(p), read_dataset(p.read_bytes())[0]) for p in case.files]
    try:
        case.volumes, failures = series_volumes(
            items, options=SeriesOptions(gantry_tilt="resample"), uid_salt=SALT
        )
        case.failures = [exc.reason for _, exc in failures]  # type: ignore[attr-defined]
    except InputError as exc:
        case.failures = [exc.reason]


@pytest.fixture(scope="module")
def cases(realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    found = {}
    for case in candidates(realdata / "dicom"):
        run_dcm2niix(case, tmp_path_factory.mktemp("dcm2niix"))
        run_ours(case)
        found[case.name] = case
    return found


def clean_references(cases: dict[str, Case]) -> list[Case]:
    return [
        c for c in cases.values() if c.references and not c.warnings and c.name not in DIFFERENT
    ]


def test_every_clean_dcm2niix_volume_is_built_identically(cases):
    checked = clean_references(cases)
    # the MOSAICs, enhanced MR/CT, SEGs and classic CT series of realdata
    assert len(checked) >= 8, sorted(c.name for c in checked)
    problems = []
    for case in checked:
        if case.failures or len(case.volumes) != len(case.references):
            problems.append((case.name, case.failures, len(case.volumes), len(case.references)))
            continue
        for volume, (reference, affine) in zip(case.volumes, case.references, strict=True):
            if volume.shape != reference.shape:
                problems.append((case.name, "shape", volume.shape, reference.shape))
            elif not np.allclose(volume.affine, affine, atol=1e-3):
                problems.append((case.name, "affine", float(np.abs(volume.affine - affine).max())))
            elif not np.array_equal(volume.array, reference):
                problems.append(
                    (case.name, "voxels", float(np.abs(volume.array - reference).max()))
                )
    assert problems == []


def test_storage_forms_covered(cases):
    forms = {v.metadata["storage"] for c in clean_references(cases) for v in c.volumes}
    assert {"mosaic", "enhanced_multiframe", "single_frame"} <= forms


def test_where_dcm2niix_differs_we_do_what_the_list_says(cases):
    for name, (expected, why) in DIFFERENT.items():
        case = cases[name]
        if expected == "voxels" or expected.startswith("same_as:"):
            assert case.references, f"{name}: dcm2niix no longer converts it ({why})"
        if expected == "voxels":
            (volume,) = case.volumes
            (reference, affine) = case.references[0]
            assert np.array_equal(volume.array, reference)
            np.testing.assert_allclose(volume.affine[:3, :2], affine[:3, :2], atol=1e-3)
            np.testing.assert_allclose(volume.affine[:3, 3], affine[:3, 3], atol=1e-3)
            assert volume.spacing[2] == pytest.approx(5.0)  # GridFrameOffsetVector step
        elif expected.startswith("same_as:"):
            (volume,) = case.volumes
            (twin,) = cases[expected.split(":", 1)[1]].volumes
            assert np.array_equal(volume.array, twin.array)
            np.testing.assert_allclose(volume.affine, twin.affine)
        else:
            assert expected in case.failures, (name, case.failures)


def test_every_candidate_is_accounted_for(cases):
    unexplained = [
        (c.name, c.warnings)
        for c in cases.values()
        if c.references and c.warnings and c.name not in DIFFERENT
    ]
    assert unexplained == []
