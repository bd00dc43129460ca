"""DICOM series -> volume: slice order, affine convention, geometry errors, HU."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from curate.demo.volumes import ct_phantom, write_ct_series
from curate.errors import InvalidGeometry
from curate.parse.volume import (
    dicom_affine,
    group_by_series,
    nifti_bytes,
    order_slices,
    read_series_datasets,
    slice_header,
    volume_from_series,
)

SPACING = (0.9, 0.8, 2.5)
ORIGIN = (-21.6, -16.0, -100.0)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    phantom = ct_phantom((16, 12, 8), seed=3)
    paths = write_ct_series(
        folder,
        phantom,
        spacing=SPACING,
        origin=ORIGIN,
        series_uid="1.2.3.4.1",
        study_uid="1.2.3.4",
        seed=1,
    )
    items, failed = read_series_datasets([(str(p), p.read_bytes()) for p in paths])
    assert failed == []
    return phantom, items


def test_volume_is_ras_with_hand_derived_affine(series):
    phantom, items = series
    volume = volume_from_series(items)
    # DICOM LPS: +i (next column) is +x = patient left, +j (next row) is +y = posterior. In RAS
    # both flip, and as_closest_canonical reverses i and j so they point right and anterior:
    # the first voxel becomes the last column/row of the DICOM grid.
    expected = np.array(
        [
            [0.9, 0.0, 0.0, -ORIGIN[0] - 15 * 0.9],
            [0.0, 0.8, 0.0, -ORIGIN[1] - 11 * 0.8],
            [0.0, 0.0, 2.5, ORIGIN[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(volume.affine, expected, atol=1e-9)
    assert volume.orientation == "RAS"
    assert volume.spacing == pytest.approx(SPACING)
    assert np.array_equal(volume.array, phantom[::-1, ::-1, :])  # exact HU
    assert volume.metadata["number_of_slices"] == 8
    assert volume.metadata["rescale_type"] == "HU"


def test_file_order_does_not_matter(series):
    _, items = series
    forward = volume_from_series(items)
    backward = volume_from_series(list(reversed(items)))
    assert np.array_equal(forward.array, backward.array)
    np.testing.assert_allclose(forward.affine, backward.affine)


def test_nifti_round_trip_through_nibabel(series):
    import nibabel as nib

    _, items = series
    volume = volume_from_series(items)
    image = nib.Nifti1Image.from_bytes(nifti_bytes(volume))
    np.testing.assert_allclose(image.affine, volume.affine, atol=1e-5)
    assert "".join(nib.aff2axcodes(image.affine)) == "RAS"
    assert np.array_equal(np.asarray(image.dataobj), volume.array)


def _headers(items):
    return [slice_header(uri, copy.deepcopy(ds)) for uri, ds in items]


def test_gantry_tilt_is_refused(series):
    _, items = series
    headers = _headers(items)
    for h in headers:  # shear: y moves 1 mm per 2.5 mm slice (about 22 degrees)
        h.position = h.position + np.array([0.0, (h.position[2] - ORIGIN[2]) / 2.5, 0.0])
    with pytest.raises(InvalidGeometry) as info:
        order_slices(headers)
    assert info.value.reason == "gantry_tilt"


def test_missing_slice(series):
    _, items = series
    headers = sorted(_headers(items), key=lambda h: h.position[2])
    del headers[4]
    with pytest.raises(InvalidGeometry) as info:
        order_slices(headers)
    assert info.value.reason == "missing_slices"
    assert "1 slice(s) missing" in str(info.value)


def test_duplicate_position(series):
    _, items = series
    headers = _headers(items)
    headers.append(copy.copy(headers[0]))
    with pytest.raises(InvalidGeometry) as info:
        order_slices(headers)
    assert info.value.reason == "duplicate_slice_position"


def test_irregular_spacing(series):
    _, items = series
    headers = sorted(_headers(items), key=lambda h: h.position[2])
    headers[3].position = headers[3].position + np.array([0.0, 0.0, 0.6])
    with pytest.raises(InvalidGeometry) as info:
        order_slices(headers)
    assert info.value.reason == "inconsistent_spacing"


def test_orientation_change_within_series(series):
    _, items = series
    headers = _headers(items)
    headers[2].row_cosine = np.array([0.0, 1.0, 0.0])
    headers[2].col_cosine = np.array([1.0, 0.0, 0.0])
    with pytest.raises(InvalidGeometry) as info:
        order_slices(headers)
    assert info.value.reason == "inconsistent_series"


def test_single_slice_is_not_a_volume(series):
    _, items = series
    with pytest.raises(InvalidGeometry) as info:
        volume_from_series(items[:1])
    assert info.value.reason == "too_few_slices"


def test_missing_position(series):
    _, items = series
    uri, ds = items[0]
    broken = copy.deepcopy(ds)
    del broken.ImagePositionPatient
    with pytest.raises(InvalidGeometry) as info:
        volume_from_series([(uri, broken)] + items[1:])
    assert info.value.reason == "missing_geometry"


def test_zero_pixel_spacing(series):
    _, items = series
    uri, ds = items[0]
    broken = copy.deepcopy(ds)
    broken.PixelSpacing = [0, 0.8]
    with pytest.raises(InvalidGeometry) as info:
        slice_header(uri, broken)
    assert info.value.reason == "zero_spacing"


def test_grouping_by_series_uid(series):
    _, items = series
    other = [(f"{uri}-b", copy.deepcopy(ds)) for uri, ds in items[:3]]
    for _, ds in other:
        ds.SeriesInstanceUID = "9.9.9"
    groups = group_by_series(items + other)
    assert {k: len(v) for k, v in groups.items()} == {"1.2.3.4.1": 8, "9.9.9": 3}


# ---------------------------------------------------------------- real Siemens CT series ----


@pytest.mark.realdata
def test_real_ct_series_affine_by_hand_and_against_nibabel(realdata):
    from nibabel.nicom import dicomwrappers

    files = sorted((realdata / "dicom/totalsegmentator_example_ct").glob("*.dcm"))
    assert len(files) == 20
    items, failed = read_series_datasets([(str(p), p.read_bytes()) for p in files])
    assert failed == []
    volume = volume_from_series(items)
    # By hand from the headers: IOP (1,0,0,0,1,0), PixelSpacing 0.9765625, IPP x/y
    # (-249.51171875, -437.51171875), z from -804.5 to -766.5 in 2 mm steps (SliceThickness is 3:
    # overlapping slices, so the spacing must come from the positions). LPS -> RAS flips x and y;
    # canonical order reverses i and j, moving the origin to the opposite corner.
    expected = np.array(
        [
            [0.9765625, 0, 0, 249.51171875 - 511 * 0.9765625],
            [0, 0.9765625, 0, 437.51171875 - 511 * 0.9765625],
            [0, 0, 2.0, -804.5],
            [0, 0, 0, 1],
        ]
    )
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)
    assert volume.shape == (512, 512, 20)
    assert volume.metadata["rescale_type"] == "HU"
    assert float(volume.array.min()) == -1024.0  # intercept -1024 applied (air outside the FOV)

    # nibabel's DICOM wrapper (LPS, array axes row, column) agrees on the in-plane axes and origin
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        headers = [slice_header(u, d) for u, d in items]
        ordered, step = order_slices(headers)
        wrapper = dicomwrappers.wrapper_from_data(ordered[0].dataset)
        nib_lps = wrapper.affine
    ours_ras = dicom_affine(ordered[0], step)
    ours_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ours_ras
    np.testing.assert_allclose(ours_lps[:3, 0], nib_lps[:3, 1])  # column index direction
    np.testing.assert_allclose(ours_lps[:3, 1], nib_lps[:3, 0])  # row index direction
    np.testing.assert_allclose(ours_lps[:3, 3], nib_lps[:3, 3])  # first voxel centre
    np.testing.assert_allclose(np.abs(ours_lps[:3, 2]), [0, 0, 2.0])  # positions, not thickness
