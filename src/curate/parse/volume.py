"""3D volumes: DICOM series and NIfTI files -> a canonical RAS+ volume -> preprocessing.

Pure and loud like the other parsers (bytes in, `Volume` out, or a named error). Conventions:

- Array axes are (i, j, k) = (column, row, slice) of the DICOM images, as dcm2niix and nibabel
  store them, and the affine maps (i, j, k, 1) to RAS+ millimetres. DICOM patient coordinates
  are LPS+, so the DICOM affine is flipped in x and y: RAS = diag(-1, -1, 1) @ LPS.
- Every volume is then reoriented with `nibabel.as_closest_canonical`, so that stored arrays of
  all sources share one axis order (RAS); the record keeps the affine, spacing and axis codes.
- A DICOM series is first cut into slices whatever its storage (`expand_slices`: classic
  instances, enhanced multi-frame functional groups, Siemens MOSAIC tiles, GridFrameOffsetVector
  grids), split into its 3D volumes (time points, echoes, stacks), then each volume is ordered
  along the slice normal (IOP row x column cosines); projected positions (IPP . normal) give
  the slice spacing. Slice Thickness is NOT the spacing (the real TotalSegmentator series has
  3 mm thick slices every 2 mm). A gantry-tilted stack is refused or resampled
  (`SeriesOptions.gantry_tilt`).

Geometry lives in `series_geometry`, `enhanced`, `mosaic` and `tilt`; the array type and
storage in `volume_core`; preprocessing in `volume_preprocess`. This module re-exports them, so
`curate.parse.volume` stays the one import for readers and training code
(`array_from_record` depends on numpy and pyarrow only).
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import replace
from typing import Any

import numpy as np

from curate.parse.mosaic import is_mosaic
from curate.parse.series_geometry import (
    SeriesOptions,
    SliceHeader,
    dicom_affine,
    frame_count,
    grid_offset_slices,
    group_by_series,
    order_slices,
    slice_header,
    slice_normal,
    split_volumes,
    tilt_angle_deg,
)
from curate.parse.series_pixels import SlicePixels, volume_dtype
from curate.parse.volume_core import (
    ARRAY_FORMAT,
    Volume,
    array_from_record,
    canonical,
    check_affine,
    decode_array,
    encode_array,
)
from curate.parse.volume_preprocess import (
    PreparedVolume,
    VolumePreprocessOptions,
    crop_or_pad,
    nifti_bytes,
    physical_grid,
    preparation_columns,
    preprocess,
    preset,
    resample_linear,
    resample_to_spacing,
    volume_columns,
    zoom_grid,
)

__all__ = [
    "ARRAY_FORMAT",
    "PreparedVolume",
    "SeriesOptions",
    "SliceHeader",
    "Volume",
    "VolumePreprocessOptions",
    "array_from_record",
    "canonical",
    "crop_or_pad",
    "decode_array",
    "dicom_affine",
    "encode_array",
    "expand_slices",
    "group_by_series",
    "load_nifti",
    "nifti_bytes",
    "order_slices",
    "physical_grid",
    "preparation_columns",
    "preprocess",
    "preset",
    "read_series_datasets",
    "resample_linear",
    "resample_to_spacing",
    "slice_header",
    "volume_columns",
    "volume_from_series",
    "volumes_from_series",
    "series_volumes",
    "zoom_grid",
]

_check_affine = check_affine  # the name older callers use

# ------------------------------------------------------------------------------- NIfTI ----

MAX_NIFTI_BYTES = 4 << 30


def load_nifti(data: bytes, *, name: str = "nifti", volume_index: int | None = None) -> Volume:
    """NIfTI-1/2 bytes (optionally gzip) -> canonical RAS+ float32 volume.

    4D inputs are errors unless `volume_index` picks one volume: a CT report describes one 3D
    image, and silently taking the first of a time series would pair text with the wrong image.
    """
    import nibabel as nib

    from curate.errors import CorruptVolume, EmptyInput, InvalidGeometry, TruncatedArchive

    if not data:
        raise EmptyInput(f"{name}: no bytes")
    if data[:2] == b"\x1f\x8b":
        try:
            stream = zlib.decompressobj(wbits=31)
            raw = stream.decompress(data, MAX_NIFTI_BYTES)
            if stream.unconsumed_tail:
                raise CorruptVolume(f"{name}: gzip member larger than {MAX_NIFTI_BYTES} bytes")
            if not stream.eof:
                raise TruncatedArchive(f"{name}: gzip stream ends early")
        except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
            raise TruncatedArchive(f"{name}: corrupt gzip stream: {exc}") from exc
        data = raw
    byteorder = "<"
    header_size = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
    if header_size not in (348, 540):
        byteorder = ">"
        header_size = int.from_bytes(data[:4], "big") if len(data) >= 4 else 0
    image_class = {348: nib.Nifti1Image, 540: nib.Nifti2Image}.get(header_size)
    if image_class is None or len(data) < header_size:
        raise CorruptVolume(f"{name}: not a NIfTI file (sizeof_hdr is not 348 or 540)")
    # nibabel silently turns a zero pixdim into 1 mm when it loads the header; a header that
    # declares zero spacing is broken, so the raw values are checked first.
    raw_pixdim = (
        np.frombuffer(data, f"{byteorder}f4", 8, 76)
        if header_size == 348
        else np.frombuffer(data, f"{byteorder}f8", 8, 104)
    )
    if not np.all(np.isfinite(raw_pixdim[1:4])) or np.any(raw_pixdim[1:4] == 0):
        raise InvalidGeometry(
            f"{name}: header pixdim {raw_pixdim[1:4].tolist()} has zero or invalid spacing",
            reason="zero_spacing",
        )
    try:
        image = image_class.from_bytes(data)
        array = np.asarray(image.get_fdata(dtype=np.float32))
        affine = np.asarray(image.affine, dtype=np.float64)
        zooms = image.header.get_zooms()
    except (ValueError, OSError, EOFError, TypeError, IndexError, MemoryError) as exc:
        raise CorruptVolume(f"{name}: unreadable NIfTI: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # nibabel's HeaderDataError/ImageFileError have no common base
        if type(exc).__module__.startswith("nibabel"):
            raise CorruptVolume(f"{name}: unreadable NIfTI: {type(exc).__name__}: {exc}") from exc
        raise
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 4:
        if volume_index is None:
            raise CorruptVolume(
                f"{name}: 4D image {array.shape}; set volume_index to take one volume",
                reason="not_3d",
            )
        if not 0 <= volume_index < array.shape[3]:
            raise CorruptVolume(
                f"{name}: volume_index {volume_index} outside {array.shape[3]}", reason="not_3d"
            )
        array = array[..., volume_index]
    if array.ndim != 3:
        raise CorruptVolume(
            f"{name}: image has {array.ndim} dimensions, expected 3", reason="not_3d"
        )
    if min(array.shape) < 1:
        raise CorruptVolume(f"{name}: empty image {array.shape}")
    if any(float(z) <= 0 or not math.isfinite(float(z)) for z in zooms[:3]):
        raise InvalidGeometry(
            f"{name}: pixdim {tuple(float(z) for z in zooms[:3])} has zero or negative spacing",
            reason="zero_spacing",
        )
    if not np.all(np.isfinite(array)):
        raise CorruptVolume(
            f"{name}: voxel values include NaN or infinity", reason="non_finite_voxels"
        )
    _check_affine(affine, name)
    return canonical(Volume(array, affine, {"source_format": "nifti"}))


# ------------------------------------------------------------------------ DICOM series ----


def expand_slices(uri: str, ds: Any) -> list[SliceHeader]:
    """Every slice a dataset holds: classic instance, enhanced multi-frame, MOSAIC, or a
    multi-frame grid with GridFrameOffsetVector (RT dose, some NM)."""
    from curate.errors import InvalidGeometry, MissingPixelData
    from curate.parse.enhanced import enhanced_slices, is_enhanced
    from curate.parse.mosaic import is_mosaic, mosaic_slices

    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise MissingPixelData(f"{uri}: series member without pixel data")
    if is_enhanced(ds):
        return enhanced_slices(uri, ds)
    if is_mosaic(ds):
        return mosaic_slices(uri, ds)
    frames = frame_count(ds)
    if frames > 1:
        if "GridFrameOffsetVector" in ds:
            return grid_offset_slices(uri, ds, frames)
        raise InvalidGeometry(
            f"{uri}: {frames} frames without per-frame positions (no functional groups, no "
            "GridFrameOffsetVector): a cine loop or tiles, not a volume",
            reason="multi_frame_without_geometry",
        )
    return [slice_header(uri, ds)]


def storage_kind(headers: list[SliceHeader]) -> str:
    first = headers[0]
    if first.tile is not None:
        return "mosaic"
    if first.functional_groups:
        return "enhanced_multiframe"
    if frame_count(first.dataset) > 1:
        return "multiframe_grid"
    return "single_frame"


def _canonical_flips(
    affine: np.ndarray, shape: tuple[int, int, int]
) -> tuple[tuple[bool, bool, bool], np.ndarray]:
    """(axes to reverse, affine of the reversed grid) when RAS+ canonical order only flips axes
    (the usual case: an axial stack's i and j run right-to-left and anterior-to-posterior).

    Filling the block already flipped leaves `canonical` nothing to do, so the stored array is
    plain Fortran-contiguous rather than a negative-stride view that costs a slow strided copy
    in every later reader and writer (nibabel writing the NIfTI took longer than assembling).
    The affine is computed as nibabel's `as_reoriented` does, so it is the same to the bit. When
    canonical order permutes axes (sagittal, coronal) nothing is flipped here and `canonical`
    reorients the view as before."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    if not np.array_equal(ornt[:, 0], [0, 1, 2]):
        return (False, False, False), affine
    flips = tuple(bool(f < 0) for f in ornt[:, 1])
    return flips, affine.dot(inv_ornt_aff(ornt, shape))  # type: ignore[return-value]


def _fill_block(
    block: np.ndarray,
    ordered: list[SliceHeader],
    pixels: SlicePixels,
    flips: tuple[bool, bool, bool],
) -> None:
    """Each slice's modality values into block[k] (k, row, column), reversing the axes
    `flips` names (i = column, j = row, k = slice)."""
    columns = slice(None, None, -1 if flips[0] else 1)
    rows = slice(None, None, -1 if flips[1] else 1)
    last = len(ordered) - 1
    for k, h in enumerate(ordered):
        pixels.values_into(h, block[last - k if flips[2] else k][rows, columns])


def _assemble(
    headers: list[SliceHeader], options: SeriesOptions, salt: str, pixels: SlicePixels
) -> Volume:
    from curate.parse.deid import deidentified_metadata
    from curate.parse.dicom import _lut_view
    from curate.parse.tilt import correct_tilt

    ordered, step = order_slices(headers, options)
    first = ordered[0]
    rows, columns = first.shape
    # Slices are filled whole into a (k, row, column) block (contiguous writes), already in
    # RAS+ order where that is only flips; its transpose is the (i, j, k) volume without a
    # copy, and Fortran order is how NIfTI stores it. The geometry is checked before the fill.
    block = np.empty((len(ordered), rows, columns), dtype=volume_dtype(ordered, pixels))
    tilted = tilt_angle_deg(ordered, slice_normal(first)) > options.tilt_tolerance_deg
    tilt = 0.0
    if not tilted:
        affine = dicom_affine(first, step)
        check_affine(affine, f"series of {first.uri}")
        flips, affine = _canonical_flips(affine, (columns, rows, len(ordered)))
        _fill_block(block, ordered, pixels, flips)
        array = block.transpose(2, 1, 0)
    else:  # order_slices let it through: gantry_tilt is "resample"
        _fill_block(block, ordered, pixels, (False, False, False))
        array, origin, step, tilt = correct_tilt(
            block.transpose(2, 1, 0),
            first.position,
            step,
            first.row_cosine,
            first.col_cosine,
            first.pixel_spacing,
            fill=float(block.min()),
        )
        first = replace(first, position=origin)
        affine = dicom_affine(first, step)
        check_affine(affine, f"series of {first.uri}")
    metadata = deidentified_metadata(first.dataset, salt=salt)
    metadata.pop("sop_uid_hash", None)  # one instance's id does not name the volume
    view = _lut_view(first.dataset, first.frame) if first.functional_groups else first.dataset
    metadata.update(
        source_format="dicom_series",
        storage=storage_kind(ordered),
        number_of_slices=len(ordered),
        rescale_type=str(view.get("RescaleType", "") or "") or None,
        gantry_tilt_deg=round(tilt, 4),
    )
    return canonical(Volume(array, affine, metadata))


def series_volumes(
    items: list[tuple[str, Any]],
    *,
    options: SeriesOptions | None = None,
    uid_salt: str | None = None,
) -> tuple[list[Volume], list[tuple[str, Exception]]]:
    """One series' (uri, dataset) pairs -> (its 3D volumes, failures).

    A series may hold several volumes (time points, echoes, stacks, segments, one per MOSAIC
    file). A self-contained object (multi-frame or MOSAIC) that cannot be read, or one volume
    that cannot be assembled, is a failure of its own and the other volumes still build; a
    broken classic slice fails the whole series (it belongs to a stack that would have a hole).
    """
    from curate.errors import InputError
    from curate.parse.deid import resolve_salt

    options = options or SeriesOptions()
    salt = resolve_salt(uid_salt)
    headers: list[SliceHeader] = []
    failures: list[tuple[str, Exception]] = []
    for uri, ds in items:
        try:
            headers.extend(expand_slices(uri, ds))
        except InputError as exc:
            if frame_count(ds) == 1 and not is_mosaic(ds):
                raise
            failures.append((uri, exc))
    groups = split_volumes(headers)
    pixels = SlicePixels()
    volumes = []
    for index, group in enumerate(groups):
        try:
            volume = _assemble(group, options, salt, pixels)
        except InputError as exc:
            failures.append((group[0].uri, exc))
            continue
        volume.metadata.update(volume_index=index, volumes_in_series=len(groups))
        volumes.append(volume)
    return volumes, failures


def volumes_from_series(
    items: list[tuple[str, Any]],
    *,
    options: SeriesOptions | None = None,
    uid_salt: str | None = None,
) -> list[Volume]:
    """Every 3D volume of one series, each canonical RAS+ float32 in modality units; the
    first failure is raised (`series_volumes` returns failures beside the volumes)."""
    volumes, failures = series_volumes(items, options=options, uid_salt=uid_salt)
    if failures:
        raise failures[0][1]
    return volumes


def volume_from_series(
    items: list[tuple[str, Any]],
    *,
    options: SeriesOptions | None = None,
    uid_salt: str | None = None,
) -> Volume:
    """One series that holds exactly one 3D volume -> that volume (named error otherwise)."""
    from curate.errors import InvalidGeometry

    volumes = volumes_from_series(items, options=options, uid_salt=uid_salt)
    if len(volumes) != 1:
        raise InvalidGeometry(
            f"series holds {len(volumes)} volumes (time points, echoes or stacks); "
            "volumes_from_series returns each",
            reason="multiple_volumes",
        )
    volume = volumes[0]
    for key in ("volume_index", "volumes_in_series"):
        volume.metadata.pop(key, None)
    # Defaults say nothing: a plain untilted stack of slices keeps the metadata it always had.
    if volume.metadata.get("storage") == "single_frame":
        volume.metadata.pop("storage")
    if not volume.metadata.get("gantry_tilt_deg"):
        volume.metadata.pop("gantry_tilt_deg", None)
    return volume


def read_series_datasets(
    files: list[tuple[str, bytes]],
) -> tuple[list[tuple[str, Any]], list[tuple[str, Exception]]]:
    """Parse each file's DICOM header; returns (parsed, failures) so no file is lost."""
    from curate.errors import InputError
    from curate.parse.dicom import read_dataset

    parsed: list[tuple[str, Any]] = []
    failed: list[tuple[str, Exception]] = []
    for uri, data in files:
        try:
            ds, _ = read_dataset(data, force=True)
            parsed.append((uri, ds))
        except InputError as exc:
            failed.append((uri, exc))
    return parsed, failed
