"""Slice geometry of DICOM series: one `SliceHeader` per 2D image, ordered along the normal.

A slice is one 2D image with its own position: a classic single-frame instance, one frame of an
enhanced (functional-group) multi-frame object (`curate.parse.enhanced`), or one tile of a
Siemens MOSAIC (`curate.parse.mosaic`). `expand_slices` turns a dataset into its slices, so the
ordering and grid checks below are the same whatever the storage.

Slices that belong to different 3D volumes of one series (time points, echoes, stacks,
segments, one MOSAIC file per volume) carry different `volume_key`s; `split_volumes` groups them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class SeriesOptions(BaseModel):
    """Tolerances for turning a DICOM series into a regular grid."""

    model_config = ConfigDict(extra="forbid")
    orientation_tolerance: float = Field(
        1e-3, description="max difference between slices' direction cosines"
    )
    tilt_tolerance_deg: float = Field(
        0.5, description="max angle between the slice normal and the slice-to-slice direction"
    )
    gantry_tilt: Literal["refuse", "resample"] = Field(
        "refuse",
        description="a sheared (gantry-tilted) series: refuse it (gantry_tilt error) or resample "
        "it onto an orthogonal grid as dcm2niix does (the angle is recorded)",
    )
    spacing_tolerance: float = Field(
        0.05, description="max relative deviation of one slice gap from the median gap"
    )
    duplicate_tolerance_mm: float = Field(
        1e-3, description="positions closer than this along the normal are the same position"
    )


@dataclass
class SliceHeader:
    uri: str
    dataset: Any
    position: np.ndarray  # IPP of this slice's first pixel, LPS mm
    row_cosine: np.ndarray  # IOP[:3], direction of increasing column index
    col_cosine: np.ndarray  # IOP[3:], direction of increasing row index
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    shape: tuple[int, int]  # (rows, columns)
    frame: int = 0  # frame of a multi-frame object
    tile: int | None = None  # MOSAIC tile index (frame 0 holds the whole mosaic)
    volume_key: tuple[Any, ...] = ()  # which 3D volume of a 4D series the slice belongs to
    functional_groups: bool = False  # rescale/window come from the frame's functional groups


def _invalid(message: str, reason: str) -> Exception:
    from curate.errors import InvalidGeometry

    return InvalidGeometry(message, reason=reason)


def checked_cosines(uri: str, iop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    row, col = iop[:3], iop[3:]
    if (
        abs(np.linalg.norm(row) - 1) > 1e-2
        or abs(np.linalg.norm(col) - 1) > 1e-2
        or abs(float(row @ col)) > 1e-2
    ):
        raise _invalid(
            f"{uri}: ImageOrientationPatient {iop.tolist()} is not two orthonormal cosines",
            "invalid_orientation",
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def checked_spacing(uri: str, spacing: tuple[float, ...]) -> tuple[float, float]:
    if len(spacing) != 2:
        raise _invalid(f"{uri}: PixelSpacing {spacing} is not two values", "missing_geometry")
    if min(spacing) <= 0:
        raise _invalid(f"{uri}: PixelSpacing {spacing} is not positive", "zero_spacing")
    return float(spacing[0]), float(spacing[1])


def _numbers(value: Any, count: int, what: str, uri: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"{uri}: malformed {what} ({exc})", "missing_geometry") from exc
    if out.shape != (count,) or not np.all(np.isfinite(out)):
        raise _invalid(f"{uri}: {what} {list(value)} is not {count} numbers", "missing_geometry")
    return out


def frame_count(ds: Any) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def slice_header(uri: str, ds: Any) -> SliceHeader:
    """The one slice of a classic single-frame instance (named errors for what is missing)."""
    from curate.errors import MissingPixelData

    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise MissingPixelData(f"{uri}: series member without pixel data")
    # Multi-frame objects keep their geometry per frame; checked before the top-level
    # attributes, which such objects do not have, so the right reason is named.
    if frame_count(ds) > 1:
        raise _invalid(f"{uri}: multi-frame instance read as a single slice", "multi_frame_series")
    header = plane_header(uri, ds)
    # Echoes and time points of one series share positions: each is its own volume.
    header.volume_key = tuple(
        str(ds.get(k, "") or "") for k in ("EchoNumbers", "TemporalPositionIdentifier")
    )
    return header


def plane_header(uri: str, ds: Any) -> SliceHeader:
    """The image plane the top-level IPP/IOP/PixelSpacing/Rows/Columns describe."""
    missing = [
        k
        for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
        if k not in ds
    ]
    if missing:
        raise _invalid(f"{uri}: no {', '.join(missing)}", "missing_geometry")
    ipp = _numbers(ds.ImagePositionPatient, 3, "ImagePositionPatient", uri)
    iop = _numbers(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", uri)
    spacing = checked_spacing(uri, tuple(_numbers(ds.PixelSpacing, 2, "PixelSpacing", uri)))
    try:
        shape = (int(ds.Rows), int(ds.Columns))
    except (AttributeError, TypeError, ValueError) as exc:
        raise _invalid(f"{uri}: no usable Rows/Columns ({exc})", "missing_geometry") from exc
    row, col = checked_cosines(uri, iop)
    return SliceHeader(uri, ds, ipp, row, col, spacing, shape)


def grid_offset_slices(uri: str, ds: Any, frames: int) -> list[SliceHeader]:
    """Frames at IPP + offset * normal (PS3.3 C.8.8.3.2: RT Dose, NM reconstructions)."""
    from copy import copy

    offsets = _numbers(ds.GridFrameOffsetVector, frames, "GridFrameOffsetVector", uri)
    first = plane_header(uri, ds)
    normal = np.cross(first.row_cosine, first.col_cosine)
    # Offsets are relative to the first frame's IPP when they start at 0 (type 1), else they
    # are z coordinates (type 2, axial only); both give the same positions below.
    base = first.position if offsets[0] == 0 else first.position - offsets[0] * normal
    out = []
    for index, offset in enumerate(offsets):
        h = copy(first)
        h.frame = index
        h.position = base + offset * normal
        out.append(h)
    return out


def group_by_series(items: list[tuple[str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    """(uri, dataset) pairs grouped by SeriesInstanceUID, in input order within a group."""
    groups: dict[str, list[tuple[str, Any]]] = {}
    for uri, ds in items:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((uri, ds))
    return groups


def split_volumes(headers: list[SliceHeader]) -> list[list[SliceHeader]]:
    """Slices grouped by `volume_key`, groups in key order (time, echo, stack order)."""
    groups: dict[tuple[Any, ...], list[SliceHeader]] = {}
    for h in headers:
        groups.setdefault(h.volume_key, []).append(h)
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(map(_sortable, k)))]


def _sortable(value: Any) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def slice_normal(first: SliceHeader) -> np.ndarray:
    normal = np.cross(first.row_cosine, first.col_cosine)
    return normal / np.linalg.norm(normal)


def tilt_angle_deg(headers: list[SliceHeader], normal: np.ndarray) -> float:
    """Largest angle between a slice-to-slice step and the slice normal (0 for a plain stack)."""
    steps = np.diff(np.stack([h.position for h in headers]), axis=0)
    lengths = np.linalg.norm(steps, axis=1)
    cos = np.clip(np.abs(steps @ normal) / np.maximum(lengths, 1e-12), -1, 1)
    return float(np.degrees(np.max(np.arccos(cos))))


def order_slices(
    headers: list[SliceHeader], options: SeriesOptions | None = None
) -> tuple[list[SliceHeader], np.ndarray]:
    """Sort along the slice normal and check the grid; returns (slices, slice step vector LPS).

    With `gantry_tilt: resample` a sheared stack passes: the step then leaves the normal and
    `curate.parse.tilt` resamples the slices onto the orthogonal grid.
    """
    options = options or SeriesOptions()
    if len(headers) < 2:
        raise _invalid(
            f"series has {len(headers)} slice(s); a volume needs 2 or more", "too_few_slices"
        )
    first = headers[0]
    for h in headers[1:]:
        if h.shape != first.shape:
            raise _invalid(f"{h.uri}: {h.shape} differs from {first.shape}", "inconsistent_series")
        if not np.allclose(h.pixel_spacing, first.pixel_spacing, rtol=1e-3, atol=1e-4):
            raise _invalid(
                f"{h.uri}: PixelSpacing {h.pixel_spacing} differs from {first.pixel_spacing}",
                "inconsistent_series",
            )
        if (
            np.max(np.abs(np.r_[h.row_cosine - first.row_cosine, h.col_cosine - first.col_cosine]))
            > options.orientation_tolerance
        ):
            raise _invalid(f"{h.uri}: orientation differs within the series", "inconsistent_series")
    normal = slice_normal(first)
    along = np.array([float(h.position @ normal) for h in headers])
    order = np.argsort(along, kind="stable")
    headers = [headers[i] for i in order]
    along = along[order]
    gaps = np.diff(along)
    if np.any(gaps < options.duplicate_tolerance_mm):
        i = int(np.argmin(gaps))
        raise _invalid(
            f"{headers[i].uri} and {headers[i + 1].uri} share position {along[i]:.3f} mm along "
            "the normal",
            "duplicate_slice_position",
        )
    median = float(np.median(gaps))
    # Gantry tilt: the slice-to-slice direction leaves the normal (sheared grid); a plain
    # affine with orthogonal axes would misplace every voxel, so it is refused or resampled.
    angle = tilt_angle_deg(headers, normal)
    if angle > options.tilt_tolerance_deg and options.gantry_tilt == "refuse":
        raise _invalid(
            f"slice direction is {angle:.2f} degrees off the slice normal "
            "(gantry tilt or sheared series; gantry_tilt: resample corrects it)",
            "gantry_tilt",
        )
    deviation = np.abs(gaps - median) / median
    if np.any(deviation > options.spacing_tolerance):
        worst = int(np.argmax(deviation))
        ratio = gaps[worst] / median
        if ratio > 1.5:
            missing = round(ratio) - 1
            raise _invalid(
                f"gap of {gaps[worst]:.3f} mm after {headers[worst].uri} where slices are "
                f"{median:.3f} mm apart: about {missing} slice(s) missing",
                "missing_slices",
            )
        raise _invalid(
            f"slice gaps vary from {gaps.min():.3f} to {gaps.max():.3f} mm",
            "inconsistent_spacing",
        )
    step = (headers[-1].position - headers[0].position) / (len(headers) - 1)
    return headers, step


def dicom_affine(first: SliceHeader, step: np.ndarray) -> np.ndarray:
    """Voxel (column i, row j, slice k) -> RAS+ mm, the dcm2niix/nibabel convention."""
    lps = np.eye(4)
    lps[:3, 0] = first.row_cosine * first.pixel_spacing[1]  # along a row = next column
    lps[:3, 1] = first.col_cosine * first.pixel_spacing[0]  # along a column = next row
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
