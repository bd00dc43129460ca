"""Enhanced (functional-group) multi-frame objects -> one `SliceHeader` per frame.

Enhanced CT/MR/PET, Legacy Converted Enhanced and Segmentation objects keep geometry per frame
(PS3.3 C.7.6.16): Plane Position, Plane Orientation and Pixel Measures sit in the frame's item
of the Per-Frame Functional Groups Sequence, or once for all frames in the Shared one. The
frame's Dimension Index Values say which volume it belongs to: every dimension except the
in-stack position (Stack ID, temporal position, echo, b-value, segment number ...) separates
volumes, so a multi-stack or 4D object becomes several 3D volumes instead of one with
duplicate positions. Rescale slope/intercept per frame come from the Pixel Value
Transformation group (`curate.parse.dicom._lut_view` applies them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.parse.series_geometry import (
    SliceHeader,
    checked_cosines,
    checked_spacing,
    frame_count,
)

# Dimension pointers that move a frame within one volume rather than to another volume.
SPATIAL_DIMENSIONS = {
    0x00209057,  # In-Stack Position Number
    0x00200032,  # Image Position (Patient)
    0x00201041,  # Slice Location
}
ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.128.1",  # Enhanced PET
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET (legacy number)
    "1.2.840.10008.5.1.4.1.1.128.2",  # Legacy Converted Enhanced PET
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
}


def is_enhanced(ds: Any) -> bool:
    return (
        "PerFrameFunctionalGroupsSequence" in ds
        or "SharedFunctionalGroupsSequence" in ds
        or str(ds.get("SOPClassUID", "") or "") in ENHANCED_SOP_CLASSES
    )


def _missing(message: str) -> Exception:
    from curate.errors import InvalidGeometry

    return InvalidGeometry(message, reason="missing_geometry")


def _group_value(frame_group: Any, shared: Any, sequence: str, keyword: str) -> Any:
    """`keyword` from the frame's functional group `sequence`, else from the shared one."""
    for group in (frame_group, shared):
        if group is None:
            continue
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


def _floats(value: Any, count: int, what: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _missing(f"malformed {what} ({exc})") from exc
    if out.shape != (count,) or not np.all(np.isfinite(out)):
        raise _missing(f"{what} {list(value)} is not {count} numbers")
    return out


def _volume_key(ds: Any, frame_group: Any, shared: Any) -> tuple[Any, ...]:
    pointers = [
        int(item.get("DimensionIndexPointer", 0) or 0)
        for item in ds.get("DimensionIndexSequence", [])
    ]
    content = (frame_group or {}).get("FrameContentSequence")
    values = None
    if content and "DimensionIndexValues" in content[0]:
        raw = content[0].DimensionIndexValues
        values = list(raw) if isinstance(raw, list | tuple) or hasattr(raw, "__iter__") else [raw]
    if values is not None and len(values) == len(pointers):
        return tuple(
            int(v) for v, p in zip(values, pointers, strict=True) if p not in SPATIAL_DIMENSIONS
        )
    # No usable dimension index: separate what the frame content and segment say.
    key: list[Any] = []
    if content:
        for keyword in ("StackID", "TemporalPositionIndex"):
            key.append(str(content[0].get(keyword, "") or ""))
    segment = _group_value(
        frame_group, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber"
    )
    key.append(str(segment or ""))
    return tuple(key)


def enhanced_slices(uri: str, ds: Any) -> list[SliceHeader]:
    """One slice per frame, positions from the functional groups (named reason when absent)."""
    frames = frame_count(ds)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_items = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_items[0] if shared_items else None
    if per_frame and len(per_frame) != frames:
        raise _missing(f"{uri}: {len(per_frame)} per-frame functional groups for {frames} frames")
    try:
        shape = (int(ds.Rows), int(ds.Columns))
    except (AttributeError, TypeError, ValueError) as exc:
        raise _missing(f"{uri}: no usable Rows/Columns ({exc})") from exc
    out: list[SliceHeader] = []
    for index in range(frames):
        group = per_frame[index] if per_frame else None
        ipp = _group_value(group, shared, "PlanePositionSequence", "ImagePositionPatient")
        iop = _group_value(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _group_value(group, shared, "PixelMeasuresSequence", "PixelSpacing")
        absent = [
            name
            for name, value in (
                ("Plane Position", ipp),
                ("Plane Orientation", iop),
                ("Pixel Measures", spacing),
            )
            if value is None
        ]
        if absent:
            raise _missing(
                f"{uri}: enhanced multi-frame object, frame {index + 1} of {frames} has no "
                f"{', '.join(absent)} functional group (per-frame or shared)"
            )
        where = f"{uri} frame {index + 1}"
        position = _floats(ipp, 3, f"{where}: ImagePositionPatient")
        row, col = checked_cosines(where, _floats(iop, 6, f"{where}: ImageOrientationPatient"))
        pixel_spacing = checked_spacing(where, tuple(_floats(spacing, 2, f"{where}: PixelSpacing")))
        out.append(
            SliceHeader(
                uri,
                ds,
                position,
                row,
                col,
                pixel_spacing,
                shape,
                frame=index,
                volume_key=_volume_key(ds, group, shared),
                functional_groups=True,
            )
        )
    return out
