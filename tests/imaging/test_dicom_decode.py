"""decode_dicom on synthetic DICOM written with pydicom: LUT order, colour, frames, bad inputs."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

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
from curate.parse.dicom import decode_dicom, maybe_gunzip


def make_dataset(
    pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2", bits_stored: int = 12, **attrs
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    for key, value in attrs.items():
        setattr(ds, key, value)
    if pixels is not None:
        ds.set_pixel_data(pixels, photometric, bits_stored)
    return ds


def to_bytes(ds: Dataset, **kwargs) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, **kwargs)
    return buffer.getvalue()


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    return chunks


def ramp(rows=8, cols=16, top=4095) -> np.ndarray:
    return np.linspace(0, top, rows * cols).reshape(rows, cols).astype(np.uint16)


# ------------------------------------------------------------------ grey-scale pipeline ----


def test_window_applies_after_rescale_to_hu():
    stored = np.array([[0, 1024 + 40, 2048, 1024 - 160, 1024 + 240, 4095]], dtype=np.uint16)
    ds = make_dataset(
        stored, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400
    )
    out = png_array(decode_dicom(to_bytes(ds)).png)
    # HU -1024 -> black, 40 (centre) -> mid grey, 1024 -> white, -160/240 -> window edges
    assert out.tolist() == [[0, 128, 255, 0, 255, 255]]


def test_without_voi_min_max_is_used():
    stored = np.array([[100, 200, 300]], dtype=np.uint16)
    out = png_array(decode_dicom(to_bytes(make_dataset(stored))).png)
    assert out.tolist() == [[0, 128, 255]]


def test_constant_image_is_black_not_nan():
    out = png_array(decode_dicom(to_bytes(make_dataset(np.full((4, 4), 7, np.uint16)))).png)
    assert out.tolist() == [[0] * 4] * 4


def test_monochrome1_inverts():
    stored = np.array([[100, 200, 300]], dtype=np.uint16)
    out = png_array(decode_dicom(to_bytes(make_dataset(stored, photometric="MONOCHROME1"))).png)
    assert out.tolist() == [[255, 127, 0]]


def test_sixteen_bit_output():
    stored = np.array([[0, 2048, 4095]], dtype=np.uint16)
    image = decode_dicom(to_bytes(make_dataset(stored)), bit_depth=16)
    pil = Image.open(io.BytesIO(image.png))
    assert pil.mode == "I;16"
    assert image.bit_depth == 16
    assert np.asarray(pil).tolist() == [[0, 32776, 65535]]


def test_png_has_no_ancillary_chunks():
    image = decode_dicom(to_bytes(make_dataset(ramp())))
    assert set(png_chunks(image.png)) == {"IHDR", "IDAT", "IEND"}
    assert Image.open(io.BytesIO(image.png)).info == {}


def test_multiframe_frame_choice():
    frames = np.stack([np.full((4, 4), v * 10, np.uint16) for v in range(5)])
    frames[:, 0, 0], frames[:, 0, 1] = 0, 100  # fixed min-max range in every frame
    ds = make_dataset(frames, NumberOfFrames=5)
    data = to_bytes(ds)
    assert decode_dicom(data).metadata["frame_index"] == 2  # middle of 5
    assert png_array(decode_dicom(data).png)[1, 1] == 51  # 20 of 0..100
    assert png_array(decode_dicom(data, frame=4).png)[1, 1] == 102  # 40 of 0..100
    assert png_array(decode_dicom(data, frame=0).png)[1, 1] == 0
    with pytest.raises(FrameOutOfRange):
        decode_dicom(data, frame=5)


def test_rle_and_deflate_decode_like_uncompressed():
    ds = make_dataset(ramp(), WindowCenter=2048, WindowWidth=4096)
    reference = decode_dicom(to_bytes(ds), bit_depth=16).png
    rle = make_dataset(ramp(), WindowCenter=2048, WindowWidth=4096)
    rle.compress(RLELossless)
    assert (
        png_array(decode_dicom(to_bytes(rle), bit_depth=16).png).tolist()
        == png_array(reference).tolist()
    )
    deflated = make_dataset(ramp(), WindowCenter=2048, WindowWidth=4096)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    result = decode_dicom(to_bytes(deflated), bit_depth=16)
    assert result.metadata["transfer_syntax_uid"] == DeflatedExplicitVRLittleEndian
    assert png_array(result.png).tolist() == png_array(reference).tolist()


def test_ybr_full_becomes_rgb():
    from pydicom.pixels import convert_color_space

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[:, 3:, 2] = 180
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = make_dataset(ybr, photometric="YBR_FULL", bits_stored=8)
    out = png_array(decode_dicom(to_bytes(ds)).png).astype(int)
    assert out.shape == (4, 6, 3)
    assert np.abs(out - rgb).max() <= 2  # YCbCr round trip rounding


def test_gzip_wrapped_file_decodes():
    data = to_bytes(make_dataset(ramp()))
    assert decode_dicom(gzip.compress(data)).png == decode_dicom(data).png


# ---------------------------------------------------------------------------- bad input ----


def test_empty_bytes():
    with pytest.raises(EmptyInput):
        decode_dicom(b"")


@pytest.mark.parametrize(
    "blob",
    [
        b"hello world, not an image" * 10,
        bytes(range(256)) * 4,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 300,
    ],
)
def test_not_dicom(blob):
    with pytest.raises(NotDicom) as info:
        decode_dicom(blob)
    assert info.value.reason == "not_dicom"


def test_no_preamble_without_force_is_not_dicom():
    data = to_bytes(make_dataset(ramp()))
    with pytest.raises(NotDicom):
        decode_dicom(data[132:], force=False)


def test_truncated_file():
    data = to_bytes(make_dataset(ramp(64, 64)))
    with pytest.raises(TruncatedDicom):
        decode_dicom(data[: len(data) - 1000])


def test_truncated_gzip():
    data = gzip.compress(to_bytes(make_dataset(ramp())))
    with pytest.raises(TruncatedArchive):
        decode_dicom(data[: len(data) // 2])


def test_gzip_expanding_past_the_limit():
    with pytest.raises(DecompressionBomb):
        maybe_gunzip(gzip.compress(b"\x00" * 100_000), limit=10_000)


def test_pixel_less_object():
    with pytest.raises(MissingPixelData):
        decode_dicom(to_bytes(make_dataset(None, Modality="SR")))


def test_declared_size_over_the_pixel_limit():
    with pytest.raises(DecompressionBomb):
        decode_dicom(to_bytes(make_dataset(ramp(64, 64))), max_pixels=1000)


def test_zero_rows_is_corrupt():
    ds = make_dataset(ramp())
    ds.Rows = 0
    with pytest.raises(CorruptPixelData):
        decode_dicom(to_bytes(ds))


def test_missing_plugin_names_the_package(monkeypatch):
    from pydicom.pixels.decoders import RLELosslessDecoder

    monkeypatch.setattr(RLELosslessDecoder, "_available", {})
    monkeypatch.setattr(
        RLELosslessDecoder, "_unavailable", {"pylibjpeg": ("pylibjpeg", "pylibjpeg-rle")}
    )
    ds = make_dataset(ramp())
    ds.compress(RLELossless, encoding_plugin="pydicom")
    with pytest.raises(DecoderMissing) as info:
        decode_dicom(to_bytes(ds))
    assert "pylibjpeg-rle" in str(info.value)


def test_syntax_without_any_decoder():
    from pydicom.encaps import encapsulate

    ds = make_dataset(ramp())
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    with pytest.raises(DecoderMissing) as info:
        decode_dicom(to_bytes(ds))
    assert "MPEG2" in str(info.value)
