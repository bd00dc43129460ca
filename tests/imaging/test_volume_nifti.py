"""NIfTI -> canonical volume, resampling, crop/pad and array storage."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from curate.demo.volumes import PHANTOM_SEEDS, ct_phantom, generate_volume_demo
from curate.errors import CorruptVolume, EmptyInput, InputError, InvalidGeometry, TruncatedArchive
from curate.parse.volume import (
    Volume,
    VolumePreprocessOptions,
    array_from_record,
    crop_or_pad,
    decode_array,
    encode_array,
    load_nifti,
    nifti_bytes,
    physical_grid,
    preprocess,
    resample_linear,
    resample_to_spacing,
    volume_columns,
    zoom_grid,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_volume_demo(tmp_path_factory.mktemp("vol"))


def _load(demo, name):
    with open(f"{demo['root']}/volumes/{name}.nii.gz", "rb") as handle:
        return load_nifti(handle.read(), name=name)


def test_orientations_end_in_the_same_canonical_volume(demo):
    ras = _load(demo, "train_1_a_1")
    lps = _load(demo, "train_1_a_2")
    assert ras.orientation == lps.orientation == "RAS"
    np.testing.assert_allclose(ras.affine, lps.affine, atol=1e-5)
    assert np.array_equal(ras.array, lps.array)
    assert np.array_equal(ras.array, ct_phantom((64, 64, 40), PHANTOM_SEEDS["train_1_a_1"]))


def test_permuted_axes_are_reordered(demo):
    volume = _load(demo, "valid_3_a_1")
    assert volume.shape == (40, 40, 24)
    assert volume.spacing == pytest.approx((0.9, 0.9, 1.5))
    assert volume.orientation == "RAS"


def test_bad_nifti_inputs(demo):
    with pytest.raises(TruncatedArchive):
        _load(demo, "train_5_a_1")
    with pytest.raises(InvalidGeometry) as info:
        _load(demo, "train_6_a_1")
    assert info.value.reason == "zero_spacing"
    with pytest.raises(EmptyInput):
        load_nifti(b"")
    with pytest.raises(CorruptVolume):
        load_nifti(b"not a nifti file at all" * 30)
    good = nifti_bytes(_load(demo, "train_1_a_1"))
    with pytest.raises(CorruptVolume):
        load_nifti(good[: len(good) // 2])  # header fine, data cut short


def test_four_d_needs_a_volume_index():
    import nibabel as nib

    data = np.random.default_rng(0).normal(size=(4, 5, 6, 3)).astype(np.float32)
    raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    with pytest.raises(CorruptVolume) as info:
        load_nifti(raw)
    assert info.value.reason == "not_3d"
    assert np.array_equal(load_nifti(raw, volume_index=2).array, data[..., 2])


def test_non_finite_voxels_are_refused():
    import nibabel as nib

    data = np.zeros((4, 4, 4), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(CorruptVolume) as info:
        load_nifti(gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes()))
    assert info.value.reason == "non_finite_voxels"


# ----------------------------------------------------------------------------- resampling ----


def test_separable_resampling_matches_scipy_zoom():
    from scipy import ndimage

    array = np.random.default_rng(1).normal(0, 300, (37, 29, 11)).astype(np.float32)
    for zoom in ((0.7, 1.3, 2.1), (1.0, 0.5, 1.0), (2.0, 2.0, 0.4)):
        ours = resample_linear(array, zoom_grid(array.shape, zoom))
        theirs = ndimage.zoom(array, zoom, order=1)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-3


def test_physical_grid_keeps_world_positions():
    # trilinear interpolation reproduces a linear function exactly, so every resampled voxel
    # must hold f(world position) computed from the new affine
    shape, spacing = (20, 16, 9), (0.8, 1.1, 3.0)
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = (-5.0, 7.0, 100.0)
    idx = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ idx + affine[:3, 3:4]
    coef = np.array([0.5, -2.0, 3.0])
    array = (coef @ world).reshape(shape).astype(np.float32)
    out = resample_to_spacing(Volume(array, affine), (0.75, 0.75, 1.5))
    assert out.spacing == pytest.approx((0.75, 0.75, 1.5))
    assert out.shape == tuple(len(c) for c in physical_grid(shape, spacing, (0.75, 0.75, 1.5)))
    new_idx = np.indices(out.shape).reshape(3, -1)
    new_world = out.affine[:3, :3] @ new_idx + out.affine[:3, 3:4]
    np.testing.assert_allclose(out.array.reshape(-1), coef @ new_world, atol=2e-3)
    np.testing.assert_allclose(out.affine[:3, 3], affine[:3, 3])  # first voxel centre kept


def test_crop_and_pad_move_the_origin():
    array = np.arange(6 * 8 * 4, dtype=np.float32).reshape(6, 8, 4)
    volume = Volume(array, np.diag([1.0, 2.0, 3.0, 1.0]))
    out = crop_or_pad(volume, (4, 12, 4), pad_value=-1000)
    assert out.shape == (4, 12, 4)
    assert np.array_equal(out.array[:, 2:10, :], array[1:5, :, :])
    assert (out.array[:, :2, :] == -1000).all() and (out.array[:, 10:, :] == -1000).all()
    # voxel (0, 2, 0) of the output is voxel (1, 0, 0) of the input: same world position
    np.testing.assert_allclose(out.affine @ [0, 2, 0, 1], volume.affine @ [1, 0, 0, 1])


def test_preprocess_ct_clip_order(demo):
    volume = _load(demo, "train_1_a_1")
    options = VolumePreprocessOptions(
        target_spacing=(1.6, 1.6, 4.0),
        intensity_window=(-500, 500),
        target_shape=(40, 40, 16),
        pad_value=-1000,
    )
    prepared = preprocess(volume, options)
    assert prepared.array.shape == (40, 40, 16)
    assert prepared.array.dtype == np.int16
    assert prepared.spacing == pytest.approx((1.6, 1.6, 4.0))
    assert prepared.original_shape == (64, 64, 40)
    assert int(prepared.array.max()) <= 500
    assert int(prepared.array.min()) == -1000  # padding (outside the clip range by choice)
    assert prepared.orientation == "RAS"


def test_default_options_are_ct_clip():
    options = VolumePreprocessOptions()
    assert options.target_spacing == (0.75, 0.75, 1.5)
    assert options.intensity_window == (-1000.0, 1000.0)
    assert options.target_shape == (480, 480, 240)
    with pytest.raises(ValueError):
        VolumePreprocessOptions(target_spacing=(0, 1, 1))
    with pytest.raises(ValueError):
        VolumePreprocessOptions(unknown=1)


# -------------------------------------------------------------------------- array storage ----


@pytest.mark.parametrize("dtype", ["int16", "float16", "float32"])
def test_array_round_trip(dtype):
    array = (np.random.default_rng(2).normal(0, 100, (7, 5, 3))).astype(dtype)
    blob = encode_array(array)
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # a standard zstd frame
    assert np.array_equal(decode_array(blob, dtype, array.shape), array)


def test_record_columns_decode(demo):
    prepared = preprocess(
        _load(demo, "train_2_a_1"),
        VolumePreprocessOptions(
            target_spacing=None, target_shape=None, intensity_window=None, store_dtype="float32"
        ),
    )
    record = volume_columns(prepared)
    assert record["shape"] == [48, 56, 30]
    assert np.array_equal(array_from_record(record), prepared.array)
    assert len(record["affine"]) == 16 and record["orientation"] == "RAS"
    import zstandard

    raw = zstandard.ZstdDecompressor().decompress(record["array"])
    assert np.array_equal(np.frombuffer(raw, "<f4").reshape(48, 56, 30), prepared.array)


def test_volume_module_imports_without_beam():
    code = (
        "import sys, curate.parse.volume as v; "
        "assert not [m for m in sys.modules if m.startswith('apache_beam')], 'beam imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------ real data ----

REAL_NIFTI = {  # outcome, canonical shape, spacing
    "nibabel/anatomical.nii": ("ok", (33, 41, 25), (2.0, 2.0, 2.0)),
    "nibabel/example4d.nii.gz": "not_3d",
    "nibabel/example_nifti2.nii.gz": "not_3d",
    "nibabel/functional.nii": "not_3d",
    "nibabel/reoriented_anat_moved.nii": ("ok", (21, 26, 22), (4.0, 4.0, 4.0)),
    "nibabel/resampled_anat_moved.nii": "non_finite_voxels",  # NaN outside the resampled field
    "nibabel/standard.nii.gz": ("ok", (4, 5, 7), (1.0, 3.0, 2.0)),
    "totalsegmentator/example_ct.nii.gz": ("ok", (122, 101, 112), (3.0, 3.0, 3.0)),
    "totalsegmentator/example_ct_sm.nii.gz": ("ok", (122, 101, 30), (3.0, 3.0, 3.0)),
    "totalsegmentator/example_mr_sm.nii.gz": ("ok", (117, 91, 20), (3.0, 3.0, 3.0)),
    "totalsegmentator/example_seg.nii.gz": ("ok", (122, 101, 30), (3.0, 3.0, 3.0)),
}


@pytest.mark.realdata
def test_real_nifti_files_match_nibabel_canonical(realdata):
    import nibabel as nib

    root = realdata / "nifti"
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == set(REAL_NIFTI)
    for rel, expected in sorted(REAL_NIFTI.items()):
        try:
            volume = load_nifti((root / rel).read_bytes(), name=rel)
        except InputError as exc:
            assert exc.reason == expected, rel
            continue
        assert expected[0] == "ok", rel
        assert volume.shape == expected[1], rel
        assert volume.spacing == pytest.approx(expected[2]), rel
        reference = nib.as_closest_canonical(nib.load(root / rel))
        np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-5, err_msg=rel)
        np.testing.assert_allclose(volume.array, reference.get_fdata(dtype=np.float32), err_msg=rel)
        assert volume.orientation == "RAS"


@pytest.mark.realdata
def test_real_lps_mr_is_reoriented(realdata):
    raw = (realdata / "nifti/totalsegmentator/example_mr_sm.nii.gz").read_bytes()
    import nibabel as nib

    assert (
        "".join(nib.aff2axcodes(nib.Nifti1Image.from_bytes(gzip.decompress(raw)).affine)) == "LPS"
    )
    assert load_nifti(raw).orientation == "RAS"
