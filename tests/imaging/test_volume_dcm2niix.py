"""Series -> volume agrees with dcm2niix: same voxels (HU), spacing and orientation.

dcm2niix is the reference converter researchers use; its NIfTI, brought to RAS+ by nibabel,
must equal our canonical volume. Skips when dcm2niix is not installed (.ci/run installs it
from Debian's packages)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from curate.demo.volumes import ct_phantom, write_ct_series, write_ct_slice
from curate.parse.volume import volume_from_series

DCM2NIIX = shutil.which("dcm2niix")
pytestmark = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix is not installed")


def reference(folder: Path, tmp: Path) -> nib.Nifti1Image:
    out = tmp / "dcm2niix"
    out.mkdir()
    subprocess.run(
        [DCM2NIIX, "-z", "n", "-f", "ref", "-o", str(out), str(folder)],
        check=True,
        capture_output=True,
    )
    niftis = sorted(out.glob("*.nii"))
    assert len(niftis) == 1, niftis
    return nib.as_closest_canonical(nib.load(str(niftis[0])))


def ours(folder: Path):
    items = [(str(p), pydicom.dcmread(p)) for p in sorted(folder.glob("*.dcm"))]
    return volume_from_series(items)


def assert_same(folder: Path, tmp: Path) -> None:
    ref = reference(folder, tmp)
    vol = ours(folder)
    assert vol.shape == ref.shape
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-3)
    np.testing.assert_allclose(vol.array, ref.get_fdata(dtype=np.float32), atol=1e-3)


@pytest.mark.realdata
def test_real_ct_series_matches_dcm2niix(realdata: Path, tmp_path: Path) -> None:
    assert_same(realdata / "dicom" / "totalsegmentator_example_ct", tmp_path)


def test_shuffled_anisotropic_axial_series_matches_dcm2niix(tmp_path: Path) -> None:
    folder = tmp_path / "axial"
    write_ct_series(
        folder,
        ct_phantom((40, 32, 12), seed=3),
        spacing=(0.8, 0.7, 2.5),
        origin=(-16.0, 20.0, -100.0),
        series_uid="1.2.3.4.1",
        study_uid="1.2.3.4",
        seed=5,
    )
    assert_same(folder, tmp_path)


def test_coronal_series_matches_dcm2niix(tmp_path: Path) -> None:
    folder = tmp_path / "coronal"
    folder.mkdir()
    volume = ct_phantom((36, 10, 28), seed=4)  # x, slice (y), z
    for k in range(volume.shape[1]):
        # Rows run along -z (superior to inferior), columns along +x; slices step along +y.
        write_ct_slice(
            folder / f"s{k:03d}.dcm",
            volume[:, k, ::-1].T,
            position=(-10.0, 5.0 + 3.0 * k, 40.0),
            orientation=(1, 0, 0, 0, 0, -1),
            spacing=(1.2, 0.9),
            instance=k + 1,
            series_uid="1.2.3.5.1",
            study_uid="1.2.3.5",
        )
    assert_same(folder, tmp_path)
