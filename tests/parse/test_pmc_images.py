"""Figure image matching and header probing."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from curate.errors import DecompressionBomb, UnreadableImage
from curate.parse.images import ImageIndex, probe_image


def png(size: tuple[int, int] = (20, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, 128).save(buf, "PNG")
    return buf.getvalue()


def test_resolve_href_without_extension_with_dots_in_name() -> None:
    index = ImageIndex(["/a/pone.0046493.g001.jpg", "/a/pone.0046493.g002.jpg", "/a/x.nxml"])
    assert index.resolve("pone.0046493.g001") == "/a/pone.0046493.g001.jpg"
    assert index.resolve("pone.0046493.g003") is None


def test_resolve_is_case_insensitive_and_prefers_web_formats() -> None:
    index = ImageIndex(["p/FIG1.TIF", "p/fig1.JPG", "p/fig1.png"])
    assert index.resolve("fig1") == "p/fig1.JPG"
    # An href naming the TIFF still gets the web JPEG of the same figure.
    assert index.resolve("Fig1.tif") == "p/fig1.JPG"


def test_resolve_exact_name_when_no_image_extension() -> None:
    index = ImageIndex(["d/figure-1", "d/article.xml"])
    assert index.resolve("figure-1") == "d/figure-1"
    assert index.resolve("article") is None  # XML/JSON are never images


def test_resolve_any_tries_alternatives_in_order() -> None:
    index = ImageIndex(["f6.png"])
    assert index.resolve_any(["f6-orig.tif", "f6"]) == "f6.png"
    assert index.resolve_any([]) is None


def test_probe_reads_header_and_hashes_unchanged_bytes() -> None:
    data = png((20, 10))
    info = probe_image(data)
    assert (info.format, info.width, info.height) == ("PNG", 20, 10)
    assert info.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("data", [b"", b"<html>not an image</html>", png()[:20]])
def test_probe_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableImage):
        probe_image(data)


def test_probe_decompression_bomb_by_configured_limit() -> None:
    with pytest.raises(DecompressionBomb) as err:
        probe_image(png((200, 100)), max_pixels=10_000)
    assert err.value.reason == "decompression_bomb"


def test_probe_pillow_bomb_error_is_mapped() -> None:
    # A PNG header declaring 30000 x 30000 pixels: Pillow itself refuses it (> 2x its limit).
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(DecompressionBomb):
        probe_image(data, max_pixels=10**12)
