"""Writers of the DICOM storage forms the series tests need and realdata lacks in variety:
enhanced multi-frame CT (functional groups, shuffled frames, two time points), Siemens-style
MOSAIC (tiles + NumberOfImagesInMosaic in (0019,100A)) and gantry-tilted CT stacks.

Each writes real DICOM with pydicom that dcm2niix also reads; the tests compare the two."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from curate.demo.drawing import dicom_dataset

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT = {"PatientName": "Test^Series", "PatientID": "SERIES-TEST-1", "StudyDate": "20240101"}


def _common(ds: Dataset, modality: str, series_uid: str, study_uid: str) -> None:
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "for"])
    ds.Modality = modality
    ds.Manufacturer = "CurateTest"
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def write_enhanced_ct(
    path: Path,
    volumes_hu: list[np.ndarray],
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    series_uid: str,
    seed: int | None = 0,
    geometry: bool = True,
) -> None:
    """Enhanced CT: volumes (x, y, z in HU) as frames (shuffled by `seed`), one temporal position
    per volume; per-frame Plane Position + Frame Content, shared orientation/measures/rescale."""
    study_uid = series_uid + ".0"
    sop_uid = generate_uid(entropy_srcs=[series_uid, "enhanced"])
    ds = dicom_dataset(ENHANCED_CT, sop_uid, ExplicitVRLittleEndian)
    _common(ds, "CT", series_uid, study_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    nx, ny, nz = volumes_hu[0].shape
    frames = [(t, k) for t in range(len(volumes_hu)) for k in range(nz)]
    if seed is not None:  # None: frames in (time, position) order
        order = np.random.default_rng(seed).permutation(len(frames))
        frames = [frames[i] for i in order]
    dims = []
    # Stack ID, In-Stack Position, Temporal Position: the order scanners write.
    for pointer, group in (
        (0x00209056, 0x00209111),
        (0x00209057, 0x00209111),
        (0x00209128, 0x00209111),
    ):
        dims.append(_item(DimensionIndexPointer=pointer, FunctionalGroupPointer=group))
    ds.DimensionIndexSequence = Sequence(dims)
    shared = Dataset()
    if geometry:
        shared.PlaneOrientationSequence = Sequence(
            [_item(ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0])]
        )
        shared.PixelMeasuresSequence = Sequence(
            [_item(PixelSpacing=[spacing[1], spacing[0]], SliceThickness=spacing[2])]
        )
    shared.PixelValueTransformationSequence = Sequence(
        [_item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    stack = []
    for t, k in frames:
        group = Dataset()
        group.FrameContentSequence = Sequence(
            [
                _item(
                    DimensionIndexValues=[1, k + 1, t + 1],
                    TemporalPositionIndex=t + 1,
                    StackID="1",
                    InStackPositionNumber=k + 1,
                )
            ]
        )
        if geometry:
            position = [origin[0], origin[1], origin[2] + spacing[2] * k]
            group.PlanePositionSequence = Sequence([_item(ImagePositionPatient=position)])
        per_frame.append(group)
        stack.append(np.clip(np.rint(volumes_hu[t][:, :, k].T) + 1024, 0, 4095))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.set_pixel_data(
        np.stack(stack).astype(np.uint16), "MONOCHROME2", 12, generate_instance_uid=False
    )
    ds.NumberOfFrames = len(frames)
    ds.save_as(str(path), enforce_file_format=True)


def write_mosaic(
    path: Path,
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    first_slice_corner: tuple[float, float, float],
    series_uid: str,
    instance: int = 1,
) -> None:
    """A Siemens-style MOSAIC MR image: slices (x, y, z) tiled row-major into an m x m grid,
    IPP of the mosaic's corner as Siemens writes it, count in (0019,100A)."""
    nx, ny, nz = volume.shape
    m = math.ceil(math.sqrt(nz))
    mosaic = np.zeros((m * ny, m * nx), dtype=np.uint16)
    for k in range(nz):
        r, c = divmod(k, m)
        mosaic[r * ny : (r + 1) * ny, c * nx : (c + 1) * nx] = volume[:, :, k].T
    row_spacing, col_spacing = spacing[1], spacing[0]
    # Siemens' IPP is where the corner of the whole mosaic would be: the first tile's corner
    # moved back by half the extra rows and columns.
    corner = np.asarray(first_slice_corner) - np.array(
        [col_spacing * (m * nx - nx) / 2, row_spacing * (m * ny - ny) / 2, 0.0]
    )
    sop_uid = generate_uid(entropy_srcs=[series_uid, str(instance)])
    ds = dicom_dataset(MR_IMAGE, sop_uid, ExplicitVRLittleEndian)
    _common(ds, "MR", series_uid, series_uid + ".0")
    ds.Manufacturer = "SIEMENS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.InstanceNumber = instance
    ds.AcquisitionNumber = instance
    ds.ImagePositionPatient = [float(v) for v in corner]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [row_spacing, col_spacing]
    ds.SliceThickness = spacing[2]
    ds.SpacingBetweenSlices = spacing[2]
    ds.AcquisitionMatrix = [0, nx, ny, 0]
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019100A, "US", nz)
    ds.set_pixel_data(mosaic, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.save_as(str(path), enforce_file_format=True)


def write_tilted_ct(
    folder: Path,
    volume_hu: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    shift_y_per_slice_mm: float,
    series_uid: str,
) -> list[Path]:
    """Axial CT slices whose origin moves `shift_y_per_slice_mm` in y per slice (gantry tilt
    about x, as scanners store it), GantryDetectorTilt set to the angle."""
    from curate.demo.volumes import write_ct_slice

    folder.mkdir(parents=True, exist_ok=True)
    tilt = math.degrees(math.atan2(shift_y_per_slice_mm, spacing[2]))
    paths = []
    for k in range(volume_hu.shape[2]):
        path = folder / f"T{k:04d}.dcm"
        write_ct_slice(
            path,
            volume_hu[:, :, k].T,
            position=(origin[0], origin[1] + shift_y_per_slice_mm * k, origin[2] + spacing[2] * k),
            spacing=(spacing[1], spacing[0]),
            instance=k + 1,
            series_uid=series_uid,
            study_uid=series_uid + ".0",
            extra={"GantryDetectorTilt": round(tilt, 4)},
        )
        paths.append(path)
    return paths
