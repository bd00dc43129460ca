"""Small synthetic CT-like volumes in the CT-RATE layout, generated offline.

`generate_volume_demo(out_dir)` writes `<out>/ct_rate/` and returns what it planted, so tests
assert exact outcomes:

- `volumes/*.nii.gz`: CT-like phantoms (air, body, lungs, spine in HU) with varied spacing and
  orientation (RAS, LPS, LAS, a permuted PSR-ordered one), a reconstruction stored as raw values
  whose slope/intercept come from the metadata CSV (as CT-RATE does), a volume without a report
  row, a truncated gzip and one with zero slice spacing;
- `series/ct_series_ok/`: a 20-slice axial DICOM CT series (shuffled file names, IPP/IOP,
  Rescale Intercept -1024, PHI in PatientName/PatientID/InstitutionName/...);
- `series/ct_series_gap/`: the same series with one slice missing;
- `reports.csv` (VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN)
  and `metadata.csv` (VolumeName, RescaleSlope, RescaleIntercept).

The returned dict is JSON-serialisable (the build stores it beside the generated files); the
phantoms themselves are recomputed with `ct_phantom(shape, seed + PHANTOM_SEEDS[name])`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from curate.demo.drawing import dicom_dataset

SERIES_PHI = {
    "PatientName": "Roe^Richard^Q",
    "PatientID": "MRN55501234",
    "PatientBirthDate": "19580214",
    "InstitutionName": "Shelbyville Memorial Hospital",
    "ReferringPhysicianName": "Hibbert^Julius",
    "AccessionNumber": "ACC99887766",
    "StudyDate": "20230412",
    "StudyID": "STUDY4471",
    "OperatorsName": "Tech^Tina",
    "StationName": "CTSCANNER07",
}


PHANTOM_SEEDS = {"train_1_a_1": 0, "train_2_a_1": 1, "valid_3_a_1": 2, "ct_series_ok": 6}


def ct_phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """HU phantom, axes (x, y, z): air outside, soft-tissue ellipse, two lungs, a spine."""
    rng = np.random.default_rng(seed)
    x, y, _ = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    vol = np.full(shape, -1000.0, dtype=np.float32)
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    vol[body] = 40.0
    for cx in (-0.4, 0.4):
        vol[((x - cx) / 0.28) ** 2 + (y / 0.4) ** 2 < 1] = -820.0
    vol[(x / 0.12) ** 2 + ((y + 0.45) / 0.12) ** 2 < 1] = 700.0
    vol += rng.normal(0, 8, shape).astype(np.float32)
    return np.clip(np.rint(vol), -1024, 3071).astype(np.float32)


def _write_nifti(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray,
    dtype: Any = np.int16,
    zero_spacing: bool = False,
) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(data.astype(dtype), affine)
    image.header.set_xyzt_units("mm")
    if zero_spacing:
        pixdim = image.header["pixdim"].copy()
        pixdim[3] = 0.0
        image.header["pixdim"] = pixdim
    nib.save(image, str(path))


def write_ct_slice(
    path: Path,
    pixels_hu: np.ndarray,
    *,
    position: tuple[float, float, float],
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    spacing: tuple[float, float] = (0.9, 0.9),
    instance: int = 1,
    series_uid: str,
    study_uid: str,
    phi: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """One CT Image Storage slice (explicit VR little endian, int16 stored = HU + 1024)."""
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    sop_uid = generate_uid(entropy_srcs=[series_uid, str(instance)])
    ds = dicom_dataset(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "for"])
    ds.Modality = "CT"
    ds.Manufacturer = "CurateDemo"
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 2.5
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    for keyword, value in (phi or {}).items():
        setattr(ds, keyword, value)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    stored = np.clip(np.rint(pixels_hu) + 1024, 0, 4095).astype(np.uint16)
    ds.set_pixel_data(stored, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.save_as(str(path), enforce_file_format=True)


def write_ct_series(
    folder: Path,
    volume_hu: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    series_uid: str,
    study_uid: str,
    skip: tuple[int, ...] = (),
    phi: dict[str, str] | None = None,
    seed: int = 0,
) -> list[Path]:
    """Axial slices of `volume_hu` (axes x=column, y=row, z) in shuffled file order."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(volume_hu.shape[2])
    paths = []
    for k in order:
        if int(k) in skip:
            continue
        path = folder / f"IM{int(k) * 7919 % 10007:05d}.dcm"  # names do not sort like z
        position = (origin[0], origin[1], origin[2] + spacing[2] * int(k))
        write_ct_slice(
            path,
            volume_hu[:, :, k].T,
            position=position,
            instance=int(k) + 1,
            spacing=(spacing[1], spacing[0]),
            series_uid=series_uid,
            study_uid=study_uid,
            phi=phi,
        )
        paths.append(path)
    return paths


REPORTS = {
    "train_1_a_1": (
        "Cough for two weeks.",
        "Non-contrast chest CT.",
        "Lungs are clear. No pleural effusion. Heart size is normal.",
        "No acute cardiopulmonary abnormality.",
    ),
    "train_1_a_2": (
        "Cough for two weeks.",
        "Non-contrast chest CT, sharp kernel.",
        "Lungs are clear. No pleural effusion.",
        "No acute abnormality.",
    ),
    "train_2_a_1": (
        "Dyspnea.",
        "Contrast-enhanced chest CT.",
        "Bilateral ground-glass opacities in the lower lobes. Small right pleural effusion.",
        "Findings consistent with infection; cannot exclude pneumonia.",
    ),
    "valid_3_a_1": (
        "Follow-up of nodule.",
        "Low-dose chest CT.",
        "A 6 mm nodule in the right upper lobe, unchanged.",
        "Stable pulmonary nodule.",
    ),
    "train_5_a_1": ("Trauma.", "Chest CT.", "No fracture.", "Normal study."),
    "train_6_a_1": ("Fever.", "Chest CT.", "No consolidation.", "Normal study."),
    "ct_series_ok": ("Chest pain.", "Chest CT.", "Mild emphysema. No mass.", "Mild emphysema."),
    "ct_series_gap": ("Chest pain.", "Chest CT.", "No mass.", "Normal study."),
}


def _write_nifti_volumes(volumes: Path, seed: int) -> None:
    """The NIfTI side: orientations, raw stored values, and the planted bad volumes."""
    volumes.mkdir(parents=True, exist_ok=True)
    phantom = ct_phantom((64, 64, 40), seed)
    # RAS, 0.8 x 0.8 x 2.0 mm
    _write_nifti(
        volumes / "train_1_a_1.nii.gz",
        phantom,
        _translate(-20, -20, -80) @ np.diag([0.8, 0.8, 2.0, 1.0]),
    )
    # the same voxels stored LPS (x and y flipped): canonical RAS must give train_1_a_1 back
    _write_nifti(
        volumes / "train_1_a_2.nii.gz",
        phantom[::-1, ::-1, :],
        _translate(-20 + 63 * 0.8, -20 + 63 * 0.8, -80) @ np.diag([-0.8, -0.8, 2.0, 1.0]),
    )
    # raw stored values (HU + 1024, uint16); slope/intercept only in metadata.csv
    small = ct_phantom((48, 56, 30), seed + 1)
    _write_nifti(
        volumes / "train_2_a_1.nii.gz",
        small[::-1] + 1024,
        _translate(24, -28, -45) @ np.diag([-1.0, 1.0, 3.0, 1.0]),
        dtype=np.uint16,
    )
    # permuted axes: array axes are (z, x, y) -> PSR-like order after the affine below
    permuted = np.transpose(ct_phantom((40, 40, 24), seed + 2), (2, 0, 1))
    affine_perm = np.zeros((4, 4))
    affine_perm[2, 0] = 1.5  # i -> superior
    affine_perm[0, 1] = 0.9  # j -> right
    affine_perm[1, 2] = 0.9  # k -> anterior
    affine_perm[:, 3] = [-18, -18, -18, 1]
    _write_nifti(volumes / "valid_3_a_1.nii.gz", permuted, affine_perm)
    _write_bad_volumes(volumes, seed)


def _write_bad_volumes(volumes: Path, seed: int) -> None:
    """A volume without a report row, a truncated gzip and a zero slice spacing."""
    _write_nifti(
        volumes / "train_4_a_1.nii.gz",
        ct_phantom((32, 32, 16), seed + 3),
        np.diag([1.0, 1.0, 2.0, 1.0]),
    )
    good = volumes / "train_5_a_1.tmp.nii.gz"
    _write_nifti(good, ct_phantom((32, 32, 16), seed + 4), np.diag([1.0, 1.0, 2.0, 1.0]))
    data = good.read_bytes()
    good.unlink()
    (volumes / "train_5_a_1.nii.gz").write_bytes(data[: len(data) // 2])
    _write_nifti(
        volumes / "train_6_a_1.nii.gz",
        ct_phantom((32, 32, 16), seed + 5),
        np.diag([1.0, 1.0, 2.0, 1.0]),
        zero_spacing=True,
    )


# The DICOM series: its geometry, and the study both series belong to.
SERIES_SHAPE = (48, 40, 20)
SERIES_SPACING = (0.9, 0.8, 2.5)
SERIES_ORIGIN = (-21.6, -16.0, -100.0)
_SERIES_STUDY_UID = "1.2.826.0.1.3680043.8.498.1000"


def _write_series(series: Path, seed: int) -> None:
    """The same phantom as a complete series and as one with slice 7 missing."""
    volume = ct_phantom(SERIES_SHAPE, seed + 6)
    for name, series_uid, skip in (
        ("ct_series_ok", _SERIES_STUDY_UID + ".1", ()),
        ("ct_series_gap", _SERIES_STUDY_UID + ".2", (7,)),
    ):
        write_ct_series(
            series / name,
            volume,
            spacing=SERIES_SPACING,
            origin=SERIES_ORIGIN,
            series_uid=series_uid,
            study_uid=_SERIES_STUDY_UID,
            skip=skip,
            phi=SERIES_PHI,
            seed=seed,
        )


def _write_csvs(root: Path) -> None:
    """reports.csv (the CT-RATE report columns) and metadata.csv (slope and intercept)."""
    with open(root / "reports.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "VolumeName",
                "ClinicalInformation_EN",
                "Technique_EN",
                "Findings_EN",
                "Impressions_EN",
            ]
        )
        for name, (info, technique, findings, impression) in REPORTS.items():
            file_name = name if name.startswith("ct_series") else f"{name}.nii.gz"
            writer.writerow([file_name, info, technique, findings, impression])
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["VolumeName", "RescaleSlope", "RescaleIntercept"])
        for name in ("train_1_a_1", "train_1_a_2", "train_2_a_1", "valid_3_a_1"):
            writer.writerow([f"{name}.nii.gz", 1, -1024 if name == "train_2_a_1" else 0])


def _kept_volume(
    subject: str, split: str, spacing: tuple[float, ...], shape: tuple[int, ...]
) -> dict[str, Any]:
    return {
        "subject_id": subject,
        "source_split": split,
        "original_spacing": spacing,
        "original_shape": shape,
    }


def generate_volume_demo(out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write `<out_dir>/ct_rate/` and return what was planted (see the module docstring)."""
    root = Path(out_dir) / "ct_rate"
    _write_nifti_volumes(root / "volumes", seed)
    _write_series(root / "series", seed)
    _write_csvs(root)
    return {
        "root": str(root),
        "reports_csv": str(root / "reports.csv"),
        "metadata_csv": str(root / "metadata.csv"),
        "kept": {
            "train_1_a_1": _kept_volume("train_1", "train", (0.8, 0.8, 2.0), (64, 64, 40)),
            "train_1_a_2": _kept_volume("train_1", "train", (0.8, 0.8, 2.0), (64, 64, 40)),
            "train_2_a_1": _kept_volume("train_2", "train", (1.0, 1.0, 3.0), (48, 56, 30)),
            "valid_3_a_1": _kept_volume("valid_3", "validation", (0.9, 0.9, 1.5), (40, 40, 24)),
            "ct_series_ok": {
                "source_split": None,
                "original_spacing": SERIES_SPACING,
                "original_shape": SERIES_SHAPE,
            },
        },
        "rejected": {"train_4_a_1": "report_missing"},
        "errors": {
            "train_5_a_1": "truncated_archive",
            "train_6_a_1": "zero_spacing",
            "ct_series_gap": "missing_slices",
        },
        "series_phi": dict(SERIES_PHI),
        "series_origin": SERIES_ORIGIN,
    }


def _translate(x: float, y: float, z: float) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = [x, y, z]
    return out
