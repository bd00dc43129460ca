"""The fast series path (uncompressed 16-bit slices read straight from their bytes, written
already in RAS+ order) gives exactly what pydicom's decoder and modality LUT give, for every
bit layout, rescale and orientation it takes, and the axial volume it stores is contiguous."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from curate.demo.drawing import dicom_dataset
from curate.parse.volume import read_series_datasets, volume_from_series

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SHAPE = (6, 5)  # rows, columns
SLICES = 4
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Rows stored bottom-up: the normal points to the feet, so i and k flip (not j) ...
AXIAL_UPSIDE_DOWN = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
# ... and columns stored left-to-right: j and k flip (not i)
AXIAL_MIRRORED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # canonical order permutes the axes
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _slices(
    *,
    bits_stored: int,
    signed: bool,
    slope: str,
    intercept: str,
    orientation: tuple[float, ...],
    syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
) -> list[tuple[str, bytes]]:
    """Slices whose unused high bits hold noise (as some scanners write), in shuffled order."""
    rng = np.random.default_rng(seed)
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    series_uid = generate_uid(entropy_srcs=[str(bits_stored), str(signed), slope, intercept])
    files = []
    for k in rng.permutation(SLICES):
        ds = dicom_dataset(CT_IMAGE, generate_uid(entropy_srcs=[series_uid, str(k)]), syntax)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[series_uid, "study"])
        ds.ImagePositionPatient = [
            float(v) for v in np.array([10.0, -20.0, 30.0]) + 2.5 * k * normal
        ]
        ds.ImageOrientationPatient = list(orientation)
        ds.PixelSpacing = [0.8, 0.6]
        ds.Rows, ds.Columns = SHAPE
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        raw = rng.integers(0, 1 << 16, size=SHAPE, dtype=np.uint16)
        ds.PixelData = raw.astype("<u2").tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"slice{int(k)}.dcm", buffer.getvalue()))
    return files


def _pydicom_reference(items: list) -> nib.Nifti1Image:
    """The volume built slice by slice with pydicom's decoder and modality LUT (float64),
    ordered along the normal, reoriented to RAS+ by nibabel."""
    datasets = [ds for _, ds in items]
    row = np.array(datasets[0].ImageOrientationPatient[:3], dtype=float)
    col = np.array(datasets[0].ImageOrientationPatient[3:], dtype=float)
    normal = np.cross(row, col)
    datasets.sort(key=lambda ds: float(np.array(ds.ImagePositionPatient, dtype=float) @ normal))
    planes = [apply_modality_lut(ds.pixel_array, ds).T for ds in datasets]  # (column, row)
    first = np.array(datasets[0].ImagePositionPatient, dtype=float)
    step = (np.array(datasets[-1].ImagePositionPatient, dtype=float) - first) / (SLICES - 1)
    lps = np.eye(4)
    lps[:3, 0] = row * float(datasets[0].PixelSpacing[1])
    lps[:3, 1] = col * float(datasets[0].PixelSpacing[0])
    lps[:3, 2] = step
    lps[:3, 3] = first
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return nib.as_closest_canonical(nib.Nifti1Image(np.stack(planes, axis=2), affine))


LAYOUTS = {
    "unsigned 12 bits, HU intercept": dict(
        bits_stored=12, signed=False, slope="1", intercept="-1024"
    ),
    "signed 12 bits": dict(bits_stored=12, signed=True, slope="1", intercept="0"),
    "signed 12 bits, int32 range": dict(bits_stored=12, signed=True, slope="20", intercept="5"),
    "signed 16 bits": dict(bits_stored=16, signed=True, slope="1", intercept="-1024"),
    "unsigned 16 bits, slope 2": dict(bits_stored=16, signed=False, slope="2", intercept="-1000"),
    "unsigned 10 bits, fractional slope": dict(
        bits_stored=10, signed=False, slope="0.5", intercept="-3.25"
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "orientation",
    [AXIAL, AXIAL_UPSIDE_DOWN, AXIAL_MIRRORED, SAGITTAL, CORONAL],
    ids=["axial", "upside_down", "mirrored", "sagittal", "coronal"],
)
def test_fast_path_equals_pydicom(layout, orientation):
    files = _slices(orientation=orientation, **LAYOUTS[layout])
    items, failed = read_series_datasets(files)
    assert failed == []
    volume = volume_from_series(items, uid_salt="test-salt-not-secret")
    reference = _pydicom_reference(items)
    expected = np.asarray(reference.dataobj)
    assert volume.array.shape == expected.shape
    assert np.array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-9)
    integral = "." not in LAYOUTS[layout]["slope"] + LAYOUTS[layout]["intercept"]
    assert volume.array.dtype.kind == ("i" if integral else "f")


def test_implicit_little_endian_takes_the_same_path():
    files = _slices(
        bits_stored=12,
        signed=True,
        slope="1",
        intercept="-1024",
        orientation=AXIAL,
        syntax=ImplicitVRLittleEndian,
    )
    items, _ = read_series_datasets(files)
    volume = volume_from_series(items, uid_salt="test-salt-not-secret")
    assert np.array_equal(volume.array, np.asarray(_pydicom_reference(items).dataobj))


@pytest.mark.parametrize(
    "orientation",
    [AXIAL, AXIAL_UPSIDE_DOWN, AXIAL_MIRRORED],
    ids=["axial", "upside_down", "mirrored"],
)
def test_axial_volume_is_stored_contiguous(orientation):
    # Filled in RAS+ order, canonical reorientation has nothing to flip: the array is plain
    # Fortran order (NIfTI's), not a negative-stride view every writer has to copy slowly.
    files = _slices(
        bits_stored=12, signed=False, slope="1", intercept="-1024", orientation=orientation
    )
    items, _ = read_series_datasets(files)
    volume = volume_from_series(items, uid_salt="test-salt-not-secret")
    assert volume.array.flags.f_contiguous
    assert volume.orientation == "RAS"
