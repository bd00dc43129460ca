"""Series stored as enhanced multi-frame objects, Siemens MOSAICs and gantry-tilted stacks.

Each form is written with pydicom (`_series_writers`), assembled by `volumes_from_series`, and
checked against the phantom it was written from (exact HU, hand-derived affine) and, where
dcm2niix is installed, against dcm2niix's NIfTI brought to RAS+ by nibabel."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from _series_writers import write_enhanced_ct, write_mosaic, write_tilted_ct

from curate.demo.volumes import ct_phantom
from curate.errors import InvalidGeometry
from curate.parse.volume import (
    SeriesOptions,
    expand_slices,
    order_slices,
    read_series_datasets,
    slice_header,
    volume_from_series,
    volumes_from_series,
)

SALT = "series-storage-test-salt"
DCM2NIIX = shutil.which("dcm2niix")
needs_dcm2niix = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix is not installed")


def items_of(folder: Path) -> list[tuple[str, object]]:
    items, failed = read_series_datasets(
        [(str(p), p.read_bytes()) for p in sorted(folder.iterdir())]
    )
    assert failed == []
    return items


def dcm2niix(folder: Path, tmp: Path) -> dict[str, nib.Nifti1Image]:
    out = tmp / f"ref-{folder.name}"
    out.mkdir()
    subprocess.run(
        [DCM2NIIX, "-z", "n", "-f", "ref", "-o", str(out), str(folder)],
        check=True,
        capture_output=True,
    )
    return {p.name: nib.as_closest_canonical(nib.load(str(p))) for p in sorted(out.glob("*.nii"))}


# ------------------------------------------------------------------- enhanced multi-frame ----


@pytest.fixture(scope="module")
def enhanced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enhanced")
    phantoms = [ct_phantom((20, 16, 6), seed=s) for s in (1, 2)]
    write_enhanced_ct(
        folder / "enhanced.dcm",
        phantoms,
        spacing=(0.8, 0.7, 2.0),
        origin=(-10.0, 20.0, -50.0),
        series_uid="1.2.826.0.1.3680043.8.498.7701",
        seed=4,
    )
    return folder, phantoms


def test_enhanced_ct_gives_one_volume_per_temporal_position(enhanced):
    folder, phantoms = enhanced
    volumes = volumes_from_series(items_of(folder), uid_salt=SALT)
    assert len(volumes) == 2
    for volume, phantom in zip(volumes, phantoms, strict=True):
        # frames were shuffled in the file: order comes from the plane positions
        assert np.array_equal(volume.array, phantom[::-1, ::-1, :])
        assert volume.spacing == pytest.approx((0.8, 0.7, 2.0))
        assert volume.orientation == "RAS"
        assert volume.metadata["storage"] == "enhanced_multiframe"
        assert volume.metadata["rescale_type"] == "HU"  # from the functional groups
    assert [v.metadata["volume_index"] for v in volumes] == [0, 1]
    expected = np.array(
        [
            [0.8, 0, 0, 10.0 - 19 * 0.8],
            [0, 0.7, 0, -20.0 - 15 * 0.7],
            [0, 0, 2.0, -50.0],
            [0, 0, 0, 1],
        ]
    )
    np.testing.assert_allclose(volumes[0].affine, expected, atol=1e-9)


def test_a_multi_volume_series_is_named_when_one_volume_is_asked_for(enhanced):
    folder, _ = enhanced
    with pytest.raises(InvalidGeometry) as info:
        volume_from_series(items_of(folder), uid_salt=SALT)
    assert info.value.reason == "multiple_volumes"


@needs_dcm2niix
def test_enhanced_ct_matches_dcm2niix(tmp_path):
    # One volume, frames shuffled. (With two temporal positions dcm2niix v1.0.20220720 sorts the
    # frames by position alone and interleaves the time points, so the 4D case is checked
    # against the phantom above instead.)
    folder = tmp_path / "enhanced"
    folder.mkdir()
    write_enhanced_ct(
        folder / "enhanced.dcm",
        [ct_phantom((20, 16, 6), seed=1)],
        spacing=(0.8, 0.7, 2.0),
        origin=(-10.0, 20.0, -50.0),
        series_uid="1.2.826.0.1.3680043.8.498.7703",
        seed=4,
    )
    (ref,) = dcm2niix(folder, tmp_path).values()
    volume = volume_from_series(items_of(folder), uid_salt=SALT)
    np.testing.assert_allclose(volume.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(volume.array, ref.get_fdata(dtype=np.float32))


def test_enhanced_without_plane_position_names_missing_geometry(tmp_path):
    # The reported bug: the top-level IPP was read first and an AttributeError became the
    # message. Now the functional groups are read and the missing one is named.
    write_enhanced_ct(
        tmp_path / "e.dcm",
        [ct_phantom((8, 8, 3), seed=1)],
        spacing=(1.0, 1.0, 1.0),
        origin=(0.0, 0.0, 0.0),
        series_uid="1.2.826.0.1.3680043.8.498.7702",
        geometry=False,
    )
    with pytest.raises(InvalidGeometry) as info:
        volumes_from_series(items_of(tmp_path), uid_salt=SALT)
    assert info.value.reason == "missing_geometry"
    message = str(info.value)
    assert "Plane Position" in message and "functional group" in message
    assert "AttributeError" not in message and "has no attribute" not in message


def test_multi_frame_object_as_a_classic_slice_is_named(enhanced):
    folder, _ = enhanced
    ((uri, ds),) = items_of(folder)
    with pytest.raises(InvalidGeometry) as info:
        slice_header(uri, ds)
    assert info.value.reason == "multi_frame_series"


def test_cine_loop_without_positions_is_not_a_volume(enhanced):
    folder, _ = enhanced
    ((uri, ds),) = items_of(folder)
    plain = copy.deepcopy(ds)
    plain.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"  # multi-frame secondary capture
    del plain.PerFrameFunctionalGroupsSequence
    del plain.SharedFunctionalGroupsSequence
    with pytest.raises(InvalidGeometry) as info:
        expand_slices(uri, plain)
    assert info.value.reason == "multi_frame_without_geometry"


# --------------------------------------------------------------------------------- MOSAIC ----


MOSAIC_SPACING = (2.0, 2.5, 3.0)
MOSAIC_CORNER = (-20.0, 30.0, 10.0)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mosaic")
    volume = np.random.default_rng(0).integers(0, 4000, (24, 20, 7)).astype(np.uint16)
    write_mosaic(
        folder / "mosaic.dcm",
        volume,
        spacing=MOSAIC_SPACING,
        first_slice_corner=MOSAIC_CORNER,
        series_uid="1.2.826.0.1.3680043.8.498.7801",
    )
    return folder, volume


def test_mosaic_tiles_become_slices_at_their_positions(mosaic):
    folder, volume = mosaic
    (built,) = volumes_from_series(items_of(folder), uid_salt=SALT)
    assert built.metadata["storage"] == "mosaic"
    assert built.shape == (24, 20, 7)  # 7 tiles of a 3x3 grid, the two empty tiles dropped
    assert np.array_equal(built.array, volume[::-1, ::-1, :].astype(np.float32))
    # First tile's corner (LPS) -> RAS; canonical order reverses i and j.
    expected = np.array(
        [
            [2.0, 0, 0, -MOSAIC_CORNER[0] - 23 * 2.0],
            [0, 2.5, 0, -MOSAIC_CORNER[1] - 19 * 2.5],
            [0, 0, 3.0, MOSAIC_CORNER[2]],
            [0, 0, 0, 1],
        ]
    )
    np.testing.assert_allclose(built.affine, expected, atol=1e-9)


@needs_dcm2niix
def test_mosaic_matches_dcm2niix(mosaic, tmp_path):
    folder, _ = mosaic
    (ref,) = dcm2niix(folder, tmp_path).values()
    (built,) = volumes_from_series(items_of(folder), uid_salt=SALT)
    np.testing.assert_allclose(built.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(built.array, ref.get_fdata(dtype=np.float32))


def _reencoded(path: Path, syntax: str, out: Path) -> Path:
    """The same MOSAIC stored in another transfer syntax (pydicom's own encoders). Big endian
    is not among them: pydicom writes OW pixel bytes unswapped, so a re-encoded file would be
    wrong; real big-endian files are covered by the realdata decode tests."""
    from pydicom import uid

    ds = pydicom.dcmread(path)
    if syntax in ("RLELossless", "JPEG2000Lossless"):
        ds.compress(getattr(uid, syntax), generate_instance_uid=False)
    elif syntax == "ImplicitVRLittleEndian":
        ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    elif syntax == "DeflatedExplicitVRLittleEndian":
        ds.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    target = out / f"{syntax}.dcm"
    ds.save_as(str(target), enforce_file_format=True)
    return target


@pytest.mark.parametrize(
    "syntax",
    [
        "ImplicitVRLittleEndian",
        "DeflatedExplicitVRLittleEndian",
        "RLELossless",
        "JPEG2000Lossless",
    ],
)
def test_mosaic_in_every_encodable_transfer_syntax(mosaic, tmp_path, syntax):
    folder, volume = mosaic
    try:
        path = _reencoded(folder / "mosaic.dcm", syntax, tmp_path)
    except (RuntimeError, NotImplementedError, ValueError) as exc:  # encoder plugin absent
        pytest.skip(f"pydicom cannot encode {syntax} here: {exc}")
    items, failed = read_series_datasets([(str(path), path.read_bytes())])
    assert failed == []
    assert str(items[0][1].file_meta.TransferSyntaxUID) != "1.2.840.10008.1.2.1"
    (built,) = volumes_from_series(items, uid_salt=SALT)
    assert np.array_equal(built.array, volume[::-1, ::-1, :].astype(np.float32))


def test_mosaic_without_image_count_is_named(mosaic):
    folder, _ = mosaic
    ((uri, ds),) = items_of(folder)
    broken = copy.deepcopy(ds)
    del broken[0x0019100A]
    with pytest.raises(InvalidGeometry) as info:
        expand_slices(uri, broken)
    assert info.value.reason == "mosaic_without_count"


# ---------------------------------------------------------------------------- gantry tilt ----


def rod_phantom(shape: tuple[int, int, int], rod: tuple[int, int]) -> np.ndarray:
    volume = np.full(shape, -1000.0, dtype=np.float32)
    volume[rod[0], rod[1], :] = 1000.0
    return volume


def test_tilted_series_is_resampled_onto_the_orthogonal_grid(tmp_path):
    # A rod parallel to z at fixed patient (x, y). The tilted acquisition moves each slice's
    # origin +1 mm in y, so the rod's row moves -1 per slice in the stored images. After the
    # correction it must sit in one column of voxels, at its true patient position.
    shape, spacing, origin = (12, 16, 6), (1.0, 1.0, 2.0), (-6.0, -8.0, -40.0)
    rod_x, rod_y = 3.0 + origin[0], 12.0 + origin[1]
    stored = np.full(shape, -1000.0, dtype=np.float32)
    for k in range(shape[2]):
        stored[3, 12 - k, k] = 1000.0  # the rod as each shifted slice sees it
    folder = tmp_path / "tilted"
    write_tilted_ct(
        folder,
        stored,
        spacing=spacing,
        origin=origin,
        shift_y_per_slice_mm=1.0,
        series_uid="1.2.826.0.1.3680043.8.498.7901",
    )
    items = items_of(folder)
    with pytest.raises(InvalidGeometry) as info:
        volume_from_series(items, uid_salt=SALT)  # the default refuses
    assert info.value.reason == "gantry_tilt"
    volume = volume_from_series(items, options=SeriesOptions(gantry_tilt="resample"), uid_salt=SALT)
    assert volume.metadata["gantry_tilt_deg"] == pytest.approx(26.5651, abs=1e-3)  # atan(1/2)
    hits = np.argwhere(volume.array > 500)
    assert len(hits) == shape[2]  # one voxel per slice, no smearing (whole-voxel shifts)
    assert len({(int(i), int(j)) for i, j, _ in hits}) == 1  # one column: the rod is straight
    i, j, _ = hits[0]
    ras = volume.affine @ np.array([i, j, 0, 1.0])
    np.testing.assert_allclose(ras[:2], [-rod_x, -rod_y], atol=1e-9)  # LPS -> RAS
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :3], axis=0), [1.0, 1.0, 2.0])
    # the field of view grew by the drift (5 mm over 6 slices): no slice lost its edge
    assert volume.shape == (12, 21, 6)
    assert float(volume.array.min()) == -1000.0


@needs_dcm2niix
def test_tilt_corrected_grid_matches_dcm2niix(tmp_path):
    # dcm2niix's `_Tilt_1` output spans the same orthogonal grid (shape and affine). Its voxel
    # values are not compared: dcm2niix labels this correction "new: please validate", and on
    # this stack its odd slices match no linear in-plane shift of the input.
    folder = tmp_path / "tilted"
    write_tilted_ct(
        folder,
        ct_phantom((24, 20, 8), seed=3),
        spacing=(1.0, 1.0, 2.0),
        origin=(-12.0, -10.0, -40.0),
        shift_y_per_slice_mm=0.5,
        series_uid="1.2.826.0.1.3680043.8.498.7902",
    )
    refs = dcm2niix(folder, tmp_path)
    ref = next(image for name, image in refs.items() if "Tilt" in name)
    volume = volume_from_series(
        items_of(folder), options=SeriesOptions(gantry_tilt="resample"), uid_salt=SALT
    )
    assert volume.shape == ref.shape
    np.testing.assert_allclose(volume.affine, ref.affine, atol=1e-3)


def test_tilt_tolerance_keeps_plain_stacks_untouched(enhanced):
    folder, phantoms = enhanced
    headers = expand_slices(*items_of(folder)[0])
    first_volume = [h for h in headers if h.volume_key == headers[0].volume_key]
    ordered, step = order_slices(first_volume, SeriesOptions(gantry_tilt="resample"))
    np.testing.assert_allclose(step, [0.0, 0.0, 2.0])
