"""Decode one DICOM object to a lossless PNG plus de-identified metadata.

Pure and loud: bytes in, `DecodedImage` out, or a named `InputError`. Decoding goes through
pydicom 3 and its pixel-data plugins (pydicom's own handlers plus pylibjpeg-libjpeg for JPEG
lossless/extended/JPEG-LS, pylibjpeg-openjpeg for JPEG 2000, pylibjpeg-rle or pydicom's RLE
handler), so every common transfer syntax decodes, including deflate and big endian.

Grey-scale pipeline (PS3.3 C.11 / PS3.4 N.2 order):
  stored values -> modality LUT (Rescale Slope/Intercept or Modality LUT Sequence)
  -> VOI (VOI LUT Sequence, else Window Center/Width incl. VOI LUT Function; first one listed)
     or, when the object has no VOI, min-max of the frame
  -> scale to the output range (8 or 16 bit) -> MONOCHROME1 inverted so that white = dense.
Colour: YBR_* is converted to RGB by pydicom, PALETTE COLOR goes through its LUTs; colour output
is always 8-bit RGB (Pillow cannot write 48-bit PNG); `bit_depth` applies to grey-scale output.
Multi-frame: one frame is decoded, the middle one (`frames // 2`) unless `frame` says otherwise —
the middle of a cine loop or an enhanced CT/MR stack is the most representative single image.
The PNG is written by Pillow with no text, time or ICC chunks, so no metadata rides along.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.errors import (
    CorruptPixelData,
    DecoderMissing,
    DecompressionBomb,
    EmptyInput,
    FrameOutOfRange,
    MissingPixelData,
    NotDicom,
    TruncatedArchive,
    TruncatedDicom,
)
from curate.parse.deid import deidentified_metadata, resolve_salt

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# 8 bytes per pixel for the worst case (float64 working copy); 200 MPixel per frame is far above
# any radiograph (~ 3000 x 3000) or whole-slide tile, and far below what exhausts a worker.
DEFAULT_MAX_PIXELS = 200_000_000
MAX_GUNZIP_BYTES = 2 << 30

# Which pip package provides a decoder for each compressed transfer syntax (for DecoderMissing).
_PLUGIN_FOR_SYNTAX = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}


@dataclass
class DecodedImage:
    png: bytes
    width: int
    height: int
    bit_depth: int  # of the PNG samples: 8 or 16
    frames: int  # frames in the source object
    metadata: dict[str, Any] = field(default_factory=dict)
    read_with_force: bool = False  # the file lacked the DICM preamble/file meta


def maybe_gunzip(data: bytes, *, limit: int = MAX_GUNZIP_BYTES) -> bytes:
    """Gzip-wrapped DICOM (`.dcm.gz`, as nibabel ships) is unwrapped; other bytes pass through."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        stream = zlib.decompressobj(wbits=31)
        out = stream.decompress(data, limit)
        if stream.unconsumed_tail:
            raise DecompressionBomb(f"gzip member expands beyond {limit} bytes")
        if not stream.eof:
            raise TruncatedArchive("gzip stream ends before its end marker")
        return out
    except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
        raise TruncatedArchive(f"corrupt gzip stream: {exc}") from exc


def read_dataset(
    data: bytes, *, force: bool = True, stop_before_pixels: bool = False
) -> tuple[Any, bool]:
    """Parse DICOM bytes; returns (dataset, read_with_force).

    `force=True` accepts files without the 128-byte preamble and file meta (old ACR-NEMA style
    writers); such a read is reported, and it must still yield real elements to count as DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise EmptyInput("no bytes")
    data = maybe_gunzip(data)
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise NotDicom(f"not DICOM: {exc}") from exc
    except EOFError as exc:
        raise TruncatedDicom(f"DICOM stream ends early: {exc}") from exc
    except (
        ValueError,
        KeyError,
        TypeError,
        OverflowError,
        NotImplementedError,
        AttributeError,
        IndexError,
    ) as exc:
        raise NotDicom(f"cannot parse as DICOM: {type(exc).__name__}: {exc}") from exc
    read_with_force = not has_preamble
    if read_with_force:
        _check_forced_read(ds)
    _infer_native_transfer_syntax(ds)
    return ds, read_with_force


def _infer_native_transfer_syntax(ds: Any) -> None:
    """Files without file meta (ACR-NEMA style) lack a Transfer Syntax UID.

    For native (not encapsulated) pixel data the syntax is exactly the encoding pydicom used to
    read the dataset, so it is set from that (pydicom's documented remedy); encapsulated data
    without a syntax stays unknown and fails loudly later.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    pixel = ds.get("PixelData")
    if pixel is None or (hasattr(pixel, "is_undefined_length") and pixel.is_undefined_length):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.transfer_syntax_inferred = True  # plain attribute, not a DICOM element


def _check_forced_read(ds: Any) -> None:
    """A forced read of arbitrary bytes "succeeds" with garbage tags; require a sane dataset."""
    try:
        tags = [int(elem.tag) for elem in ds]
        if not tags:
            raise NotDicom("no DICOM preamble and no elements could be read")
        known = sum(1 for e in ds if e.keyword)
        if known == 0 or known < len(tags) // 2:
            raise NotDicom(
                f"no DICOM preamble; forced read found {len(tags)} elements, {known} known ones"
            )
    except NotDicom:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom defers parsing; any failure here means garbage
        raise NotDicom(f"no DICOM preamble; forced read is not a dataset: {exc}") from exc


def transfer_syntax(ds: Any) -> tuple[str | None, str | None]:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        return None, None
    return str(uid), getattr(uid, "name", None) or None


def frame_count(ds: Any) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _frame_value(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute from the per-frame, then shared, functional groups (enhanced multi-frame)."""
    for groups, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        seq = ds.get(groups)
        if seq and len(seq) > index:
            inner = seq[index].get(sequence)
            if inner and inner[0].get(keyword) is not None:
                return inner[0].get(keyword)
    return None


def _lut_view(ds: Any, frame: int) -> Any:
    """A dataset whose top-level LUT attributes are the ones valid for `frame`.

    Enhanced multi-frame objects keep Rescale and Window values in functional groups, where
    pydicom's `apply_modality_lut` / `apply_voi_lut` do not look.
    """
    from pydicom.dataset import Dataset

    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        return ds
    view = Dataset()
    for keyword in (
        "BitsStored",
        "BitsAllocated",
        "PixelRepresentation",
        "PhotometricInterpretation",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "ModalityLUTSequence",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        "VOILUTSequence",
    ):
        if keyword in ds:
            setattr(view, keyword, ds[keyword].value)
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        value = _frame_value(ds, frame, "PixelValueTransformationSequence", keyword)
        if value is not None:
            setattr(view, keyword, value)
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction"):
        value = _frame_value(ds, frame, "FrameVOILUTSequence", keyword)
        if value is not None:
            setattr(view, keyword, value)
    return view


def _decode_frame(ds: Any, frame: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    ts_uid, ts_name = transfer_syntax(ds)
    try:
        # as_rgb: pydicom converts YBR_* to RGB; PALETTE COLOR goes through its LUTs later.
        return pixel_array(ds, index=frame, as_rgb=True)
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        text = str(exc)
        lower = text.lower()
        package = _PLUGIN_FOR_SYNTAX.get(ts_uid or "", "a pydicom pixel-data plugin")
        if "missing dependencies" in lower:
            raise DecoderMissing(
                f"no installed decoder for {ts_name or ts_uid}: install {package} ({text[:300]})"
            ) from exc
        if "is not supported" in lower and "transfer syntax" in lower:
            raise DecoderMissing(
                f"pydicom has no decoder for {ts_name or ts_uid} (video and other syntaxes need "
                f"an external tool such as python-gdcm or ffmpeg): {text[:300]}"
            ) from exc
        if "exceptions were raised by all available plugins" in lower:
            raise CorruptPixelData(
                f"{ts_name or ts_uid}: every installed decoder rejected the stream (python-gdcm "
                f"accepts some streams pylibjpeg rejects): {text[:400]}"
            ) from exc
        if "less than expected" in lower or ("length" in lower and "match" in lower):
            raise TruncatedDicom(f"pixel data shorter than declared: {text[:300]}") from exc
        raise CorruptPixelData(f"cannot decode pixel data: {text[:500]}") from exc
    except EOFError as exc:
        raise TruncatedDicom(f"pixel data ends early: {str(exc)[:300]}") from exc
    except (AttributeError, KeyError, TypeError, IndexError, OverflowError, MemoryError) as exc:
        raise CorruptPixelData(
            f"pixel data attributes are inconsistent: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


def _voi_bounds(arr_after_modality: np.ndarray, view: Any) -> tuple[np.ndarray, float, float]:
    """Apply VOI (LUT or window) and return (image, low, high) of its output range."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in view and view.VOILUTSequence:
        out = apply_voi_lut(arr_after_modality, view, index=0)
        lut = np.asarray(view.VOILUTSequence[0].LUTData, dtype=np.float64)
        return out, float(lut.min()), float(lut.max())
    if "WindowCenter" in view and "WindowWidth" in view:
        out = apply_voi_lut(arr_after_modality, view, index=0)
        # The window's output range is pydicom's [y_min, y_max]; mapping the two extremes
        # through the same function reads it without re-implementing that logic.
        ends = apply_voi_lut(np.array([-1e30, 1e30]), view, index=0)
        return out, float(np.min(ends)), float(np.max(ends))
    return arr_after_modality, float(arr_after_modality.min()), float(arr_after_modality.max())


def _to_output_range(arr: np.ndarray, low: float, high: float, bit_depth: int) -> np.ndarray:
    top = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.zeros(arr.shape, dtype=dtype)  # a constant frame stays black, not NaN
    scaled = (arr.astype(np.float64) - low) * top / (high - low)
    return np.clip(np.rint(scaled), 0, top).astype(dtype)


def _grey(arr: np.ndarray, ds: Any, frame: int, bit_depth: int) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    view = _lut_view(ds, frame)
    values = apply_modality_lut(arr, view)
    values, low, high = _voi_bounds(values, view)
    out = _to_output_range(values, low, high, bit_depth)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = ((1 << bit_depth) - 1 - out.astype(np.int64)).astype(out.dtype)
    return out


def _colour(arr: np.ndarray, ds: Any) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except (ValueError, KeyError, AttributeError, IndexError) as exc:
            raise CorruptPixelData(f"palette colour lookup tables unusable: {exc}") from exc
        lut_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        top = float((1 << lut_bits) - 1)
    else:
        top = float((1 << int(ds.get("BitsStored", 8) or 8)) - 1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise CorruptPixelData(f"colour image has shape {arr.shape}, expected rows x columns x 3")
    if arr.dtype == np.uint8 and top == 255:
        return arr
    scaled = arr.astype(np.float64) * (255.0 / top)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray, *, compress_level: int = 6) -> bytes:
    """Lossless PNG with no ancillary chunks (no text, time, gamma, ICC)."""
    from PIL import Image

    if image.ndim == 2 and image.dtype == np.uint16:
        pil = Image.fromarray(image.astype("<u2", copy=False))  # Pillow picks mode I;16
    else:
        pil = Image.fromarray(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def decode_dicom(
    data: bytes,
    *,
    bit_depth: int = 8,
    force: bool = True,
    frame: int | None = None,
    uid_salt: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    compress_level: int = 6,
) -> DecodedImage:
    """DICOM bytes (optionally gzip-wrapped) -> PNG + de-identified metadata, or a named error.

    `uid_salt`: salt for the UID hashes (else `$CURATE_UID_SALT`, else a public default).
    `frame`: 0-based frame of a multi-frame object; None takes the middle frame (`frames // 2`).
    """
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    ds, forced = read_dataset(data, force=force)
    sop_class = str(
        ds.get("SOPClassUID", "")
        or (getattr(ds, "file_meta", None) or {}).get("MediaStorageSOPClassUID", "")
    )
    if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise MissingPixelData("a DICOMDIR (media directory index) holds no image")
    if not any(k in ds for k in PIXEL_KEYWORDS):
        kind = getattr(ds.get("SOPClassUID"), "name", "") or str(ds.get("Modality", "")) or "object"
        raise MissingPixelData(f"{kind} has no pixel data element")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptPixelData("pixel data without usable Rows/Columns") from exc
    if rows <= 0 or columns <= 0:
        raise CorruptPixelData(f"image size {rows}x{columns} is empty")
    if rows * columns > max_pixels:
        raise DecompressionBomb(f"frame of {rows}x{columns} exceeds {max_pixels} pixels")
    frames = frame_count(ds)
    index = frames // 2 if frame is None else frame
    if not 0 <= index < frames:
        raise FrameOutOfRange(f"frame {index} requested; the object has {frames}")

    arr = _decode_frame(ds, index)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if samples == 1 and photometric != "PALETTE COLOR":
        if arr.ndim != 2:
            raise CorruptPixelData(f"grey-scale frame has shape {arr.shape}")
        image = _grey(arr, ds, index, bit_depth)
        out_bits = bit_depth
    else:
        image = _colour(arr, ds)
        out_bits = 8

    metadata = deidentified_metadata(ds, salt=resolve_salt(uid_salt))
    ts_uid, ts_name = transfer_syntax(ds)
    metadata.update(
        transfer_syntax_uid=ts_uid,
        transfer_syntax_name=ts_name,
        transfer_syntax_inferred=bool(getattr(ds, "transfer_syntax_inferred", False)),
        frame_index=index,
        number_of_frames=frames,
    )
    height, width = image.shape[:2]
    return DecodedImage(
        png=encode_png(image, compress_level=compress_level),
        width=int(width),
        height=int(height),
        bit_depth=out_bits,
        frames=frames,
        metadata=metadata,
        read_with_force=forced,
    )
