"""Slice pixels in modality units, fast where the data allows and exact everywhere.

`SlicePixels` decodes each object once (a MOSAIC's tiles share one frame) and writes each
slice's modality values (rescale slope/intercept, or pydicom's modality LUT) into the volume
block. `volume_dtype` picks int16/int32 when every slice holds integers with an integer
rescale whose range fits (HU stay exact at half the bytes of float32); float32 otherwise.
Uncompressed little-endian 16-bit slices are read straight from their bytes
(`_native_frame`), with the same unused-bit handling as pydicom.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.parse.series_geometry import SliceHeader


class SlicePixels:
    """Decoded frames, each object decoded once (a MOSAIC's tiles share one frame)."""

    def __init__(self) -> None:
        self._frames: dict[tuple[int, int], np.ndarray] = {}
        self._rescales: dict[tuple[int, int], tuple[int, int] | None] = {}

    def rescale(self, h: SliceHeader) -> tuple[int, int] | None:
        """`_integer_rescale` of the slice's modality view, read once per frame."""
        key = (id(h.dataset), h.frame)
        if key not in self._rescales:
            self._rescales[key] = _integer_rescale(_modality_view(h))
        return self._rescales[key]

    def frame(self, ds: Any, index: int) -> np.ndarray:
        from curate.parse.dicom import _decode_frame

        key = (id(ds), index)
        if key not in self._frames:
            native = _native_frame(ds) if index == 0 else None
            self._frames[key] = native if native is not None else _decode_frame(ds, index)
        return self._frames[key]

    def stored(self, h: SliceHeader) -> np.ndarray:
        """The slice's stored values (rows, columns), before the modality LUT."""
        from curate.errors import CorruptVolume
        from curate.parse.mosaic import tile_pixels

        ds = h.dataset
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric == "PALETTE COLOR":
            raise CorruptVolume(
                f"{h.uri}: {photometric or 'colour'} pixels; a volume holds one value per voxel",
                reason="not_grayscale",
            )
        pixels = self.frame(ds, h.frame)
        if h.tile is not None:
            pixels = tile_pixels(pixels, h.tile, h.shape)
        if pixels.shape != h.shape:
            raise CorruptVolume(
                f"{h.uri}: frame {h.frame + 1} decodes to {pixels.shape}, expected {h.shape}"
            )
        return pixels

    def values_into(self, h: SliceHeader, target: np.ndarray) -> None:
        """The slice in modality units written into `target` (an integer target only when
        `volume_dtype` said every slice's rescale fits it, so integer math is exact)."""
        from pydicom.pixels import apply_modality_lut

        pixels = self.stored(h)
        linear = self.rescale(h)
        if target.dtype.kind in "iu" and linear is not None and pixels.dtype.kind in "iu":
            np.copyto(target, pixels, casting="unsafe")  # in range: checked from the bits
            if linear[0] != 1:
                target *= linear[0]
            if linear[1]:
                target += linear[1]
            return
        # a LUT, a fractional slope or float pixels: pydicom's float64 arithmetic
        target[...] = apply_modality_lut(pixels, _modality_view(h))


def _modality_view(h: SliceHeader) -> Any:
    from curate.parse.dicom import _lut_view

    # Slope/intercept may differ per slice (PET, some CT) and per frame (enhanced).
    return _lut_view(h.dataset, h.frame) if h.functional_groups else h.dataset


def volume_dtype(headers: list[SliceHeader], pixels: SlicePixels | None = None) -> np.dtype:
    """int16 or int32 when every slice is integer pixels with an integer rescale whose output
    range (from Bits Stored and Pixel Representation) fits; float32 otherwise. Integer volumes
    keep HU exactly at half the bytes of float32 and skip a float pass per voxel."""
    low, high = 0, 0
    cache = pixels or SlicePixels()
    for h in headers:
        linear = cache.rescale(h)
        ds = h.dataset
        try:
            bits = int(ds.BitsStored)
            signed = int(ds.PixelRepresentation) == 1
            if int(ds.BitsAllocated) > 16:
                return np.dtype(np.float32)
        except (AttributeError, TypeError, ValueError):
            return np.dtype(np.float32)
        if linear is None or not 1 <= bits <= 16:
            return np.dtype(np.float32)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        ends = (lo * linear[0] + linear[1], hi * linear[0] + linear[1])
        low, high = min(low, *ends), max(high, *ends)
    for dtype in (np.int16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.float32)


_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _native_frame(ds: Any) -> np.ndarray | None:
    """The one frame of an uncompressed little-endian 16-bit grey image, read straight from
    the bytes (pydicom's general pixel path costs more than the copy for a CT slice); None for
    anything else, which goes through pydicom. Unused high bits are shifted out exactly as
    pydicom's `_correct_unused_bits` does, so both paths give the same values."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "")
    try:
        if (
            syntax not in _NATIVE_LITTLE_ENDIAN
            or "PixelData" not in ds
            or int(ds.get("NumberOfFrames", 1) or 1) != 1
            or int(ds.get("SamplesPerPixel", 1) or 1) != 1
            or int(ds.BitsAllocated) != 16
        ):
            return None
        rows, columns, stored = int(ds.Rows), int(ds.Columns), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
    except (AttributeError, TypeError, ValueError):
        return None
    raw = ds.PixelData
    if not isinstance(raw, bytes | bytearray) or len(raw) < rows * columns * 2 or stored > 16:
        return None  # short or odd data: pydicom names the problem
    array = np.frombuffer(raw, "<i2" if signed else "<u2", rows * columns).reshape(rows, columns)
    if stored < 16:
        if signed:  # sign-extend from the highest stored bit
            shift = 16 - stored
            array = np.right_shift(np.left_shift(array, shift), shift)
        else:  # for unsigned values the two shifts are a mask: one pass
            array = np.bitwise_and(array, np.uint16((1 << stored) - 1))
    return array


def _integer_rescale(view: Any) -> tuple[int, int] | None:
    """(slope, intercept) when the modality LUT is a linear rescale by integers, else None."""
    if "ModalityLUTSequence" in view and view.ModalityLUTSequence:
        return None
    try:
        slope = float(view.get("RescaleSlope", 1) or 1)
        intercept = float(view.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return None
    if slope != int(slope) or intercept != int(intercept) or abs(intercept) > 1 << 20:
        return None
    return int(slope), int(intercept)
