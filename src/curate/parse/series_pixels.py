"""Slice pixels in modality units, fast where the data allows and exact everywhere.

`SlicePixels` decodes each object once (a MOSAIC's tiles share one frame) and writes each
slice's modality values (rescale slope/intercept, or pydicom's modality LUT) into the volume
block. `volume_dtype` picks int16/int32 when every slice holds integers with an integer
rescale whose range fits (HU stay exact at half the bytes of float32); float32 otherwise.
Uncompressed little-endian 16-bit slices are read straight from their bytes, with the same
unused-bit handling as pydicom: a classic slice into its place in the block in one pass
(`SlicePixels._native_into`, no frame kept), a frame another path needs via `_native_frame`.
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

        linear = self.rescale(h)
        if target.dtype.kind in "iu" and linear is not None:
            if self._native_into(h, target):
                self._rescale_in_place(target, linear)
                return
            pixels = self.stored(h)
            if pixels.dtype.kind in "iu":
                np.copyto(target, pixels, casting="unsafe")  # in range: checked from the bits
                self._rescale_in_place(target, linear)
                return
        else:
            pixels = self.stored(h)
        # a LUT, a fractional slope or float pixels: pydicom's float64 arithmetic
        target[...] = apply_modality_lut(pixels, _modality_view(h))

    @staticmethod
    def _rescale_in_place(target: np.ndarray, linear: tuple[int, int]) -> None:
        if linear[0] != 1:
            target *= linear[0]
        if linear[1]:
            target += linear[1]

    def _native_into(self, h: SliceHeader, target: np.ndarray) -> bool:
        """A classic uncompressed 16-bit slice's stored values written straight from its bytes
        into the integer `target` (one pass: the copy and the unused-bit correction together,
        no decoded frame kept); False when the slice is anything else (`stored` reads it)."""
        if h.tile is not None or h.frame != 0 or h.functional_groups:
            return False
        layout = _native_layout(h.dataset)
        if layout is None or layout[0] != h.shape or target.shape != h.shape:
            return False
        shape, stored, signed, data = layout
        raw = np.frombuffer(data, "<i2" if signed else "<u2", shape[0] * shape[1]).reshape(shape)
        if stored == 16:
            np.copyto(target, raw, casting="unsafe")
        elif signed:  # sign-extend from the highest stored bit, as pydicom does
            if target.dtype.kind != "i":
                return False
            # copying keeps the low bits; shifting them to the top of the target's width and
            # back (arithmetic) sign-extends whatever that width is
            np.copyto(target, raw, casting="unsafe")
            shift = target.dtype.itemsize * 8 - stored
            target <<= shift
            target >>= shift
        else:  # for unsigned values the two shifts are a mask
            np.bitwise_and(raw, np.uint16((1 << stored) - 1), out=target, casting="unsafe")
        return True


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


def _native_layout(ds: Any) -> tuple[tuple[int, int], int, bool, bytes | bytearray] | None:
    """((rows, columns), bits stored, signed, pixel bytes) of the one frame of an uncompressed
    little-endian 16-bit grey image whose bytes can be read straight (pydicom's general pixel
    path costs more than the copy for a CT slice); None for anything else, which goes through
    pydicom (colour, short or odd data: pydicom names the problem)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "")
    try:
        if (
            syntax not in _NATIVE_LITTLE_ENDIAN
            or int(ds.get("NumberOfFrames", 1) or 1) != 1
            or int(ds.get("SamplesPerPixel", 1) or 1) != 1
            or int(ds.BitsAllocated) != 16
            or str(ds.get("PhotometricInterpretation", "") or "").strip() == "PALETTE COLOR"
        ):
            return None
        rows, columns, stored = int(ds.Rows), int(ds.Columns), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
    except (AttributeError, TypeError, ValueError):
        return None
    raw = ds.get("PixelData")
    if not isinstance(raw, bytes | bytearray) or len(raw) < rows * columns * 2:
        return None
    if not 1 <= stored <= 16:
        return None
    return (rows, columns), stored, signed, raw


def _native_frame(ds: Any) -> np.ndarray | None:
    """The one frame of an uncompressed little-endian 16-bit grey image, read straight from
    the bytes; None for anything else (see `_native_layout`). Unused high bits are shifted out
    exactly as pydicom's `_correct_unused_bits` does, so both paths give the same values."""
    layout = _native_layout(ds)
    if layout is None:
        return None
    (rows, columns), stored, signed, raw = layout
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
