"""Synthetic images for the demo corpora: modality-like phantoms, figure-like pictures, the
primitives they are drawn from, and their encoding (JPEG/PNG bytes, DICOM headers).

Every function draws from the caller's seeded generator in a fixed order: the corpora, and the
shard sha256s of the builds made from them, depend on that order, so a change here that moves
or adds a draw changes every demo build.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# ---------------------------------------------------------------------------------------------
# Primitives


def noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Gaussian noise of `shape` (rows, columns[, channels]) around 0."""
    return rng.normal(0.0, scale, shape)


def to_image(arr: np.ndarray, mode: str = "L") -> Image.Image:
    """Clip a float array to 0..255 and make it an 8-bit image."""
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode=mode)


def blurred(img: Image.Image, radius: float) -> np.ndarray:
    """The image after a Gaussian blur, as a float array (to add noise or blend)."""
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64)


def smooth_field(
    rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """A random low-frequency field in 0..255: a coarse `grid` of values upsampled to `size`.

    It makes every background (and its perceptual hash) distinct."""
    coarse = to_image(rng.uniform(0, 255, grid))
    return np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)


def he_texture(
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    area_per_nucleus: int,
    radius: tuple[float, float],
    shade: tuple[int, int],
    green: int,
    blue_over_red: int,
    blur: float,
) -> np.ndarray:
    """An H&E-like section as an (h, w, 3) float array: eosin-pink ground scattered with
    haematoxylin-stained nuclei, coloured (shade, green, shade + blue_over_red)."""
    w, h = size
    img = Image.new("RGB", size, (236, 196, 214))  # eosin background
    draw = ImageDraw.Draw(img)
    for _ in range(int(w * h / area_per_nucleus)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(*radius)
        level = int(rng.integers(*shade))
        draw.ellipse(
            (x - r, y - r * 0.8, x + r, y + r * 0.8), fill=(level, green, level + blue_over_red)
        )
    return blurred(img, blur)


# ---------------------------------------------------------------------------------------------
# Modality-like phantoms (PMC figures): one maker per kind, `MAKERS[kind](rng, (w, h))`


def chest_xray(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("L", size, 30)
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.08, h * 0.05, w * 0.92, h * 1.05), fill=150)  # thorax
    for side in (0, 1):  # dark lungs
        x0 = w * (0.14 + 0.4 * side + rng.uniform(-0.02, 0.02))
        draw.ellipse((x0, h * 0.15, x0 + w * 0.32, h * 0.85), fill=int(rng.integers(55, 80)))
    draw.rectangle((w * 0.46, 0, w * 0.54, h), fill=200)  # spine / mediastinum
    for k in range(7):  # ribs
        y = h * (0.18 + 0.09 * k)
        draw.arc((w * 0.1, y, w * 0.9, y + h * 0.25), 200, 340, fill=175, width=max(2, w // 90))
    lesion = (w * rng.uniform(0.2, 0.7), h * rng.uniform(0.3, 0.7))
    draw.ellipse((lesion[0], lesion[1], lesion[0] + w * 0.08, lesion[1] + h * 0.06), fill=140)
    return to_image(blurred(img, 2) + noise(rng, (h, w), 6))


def ct_slice(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    draw.ellipse(
        (w * 0.1, h * 0.2, w * 0.9, h * 0.85), fill=110, outline=230, width=max(3, w // 60)
    )
    for _ in range(int(rng.integers(3, 6))):  # organs
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.35, 0.7)
        rx, ry = w * rng.uniform(0.05, 0.14), h * rng.uniform(0.05, 0.12)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(70, 170)))
    draw.ellipse((w * 0.45, h * 0.68, w * 0.55, h * 0.78), fill=240)  # vertebra
    return to_image(blurred(img, 1) + noise(rng, (h, w), 8))


def brain_mri(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((xx - w / 2) / (w * 0.38)) ** 2 + ((yy - h / 2) / (h * 0.45)) ** 2
    texture = smooth_field(rng, (h // 8 + 1, w // 8 + 1), size)
    arr = np.where(r < 1.0, 90 + 0.5 * texture, 5.0)
    arr = np.where((r > 0.85) & (r < 1.0), 220, arr)  # skull / scalp
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    arr = np.where(((xx - cx) ** 2 + (yy - cy) ** 2) < (w * 0.06) ** 2, 235, arr)  # lesion
    return to_image(arr + noise(rng, (h, w), 4))


def histology_he(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    arr = he_texture(
        rng,
        size,
        area_per_nucleus=900,
        radius=(3, 8),
        shade=(60, 120),
        green=40,
        blue_over_red=70,
        blur=1,
    )
    return to_image(arr + noise(rng, arr.shape, 5), mode="RGB")


def ultrasound(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    angle = np.degrees(np.arctan2(xx - w / 2, yy + h * 0.05))
    dist = np.hypot(xx - w / 2, yy + h * 0.05)
    sector = (np.abs(angle) < 35) & (dist < h * 1.0) & (dist > h * 0.1)
    speckle = rng.rayleigh(40, (h, w))
    arr = np.where(sector, speckle + 30, 0.0)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.45, 0.7)
    arr = np.where(
        ((xx - cx) / (w * 0.1)) ** 2 + ((yy - cy) / (h * 0.07)) ** 2 < 1, 10, arr
    )  # cyst
    return to_image(arr)


def fundus(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.05, h * 0.05, w * 0.95, h * 0.95), fill=(190, 80, 30))
    dx = w * rng.uniform(0.55, 0.7)
    draw.ellipse((dx, h * 0.4, dx + w * 0.12, h * 0.52), fill=(250, 210, 140))  # optic disc
    for _ in range(6):  # vessels
        pts = [(dx + w * 0.06, h * 0.46)]
        for _ in range(4):
            pts.append((pts[-1][0] + rng.uniform(-60, 20), pts[-1][1] + rng.uniform(-50, 50)))
        draw.line(pts, fill=(120, 20, 10), width=3)
    return img.filter(ImageFilter.GaussianBlur(1))


MAKERS = {
    "xray": chest_xray,
    "ct": ct_slice,
    "mri": brain_mri,
    "he": histology_he,
    "us": ultrasound,
    "fundus": fundus,
}


def chest_gradient(rng: np.random.Generator, rows: int, cols: int, bits: int) -> np.ndarray:
    """A smooth 'chest-like' gradient with a random blob, different for every image: raw
    detector values of `bits` bits (uint8 up to 8 bits, else uint16)."""
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = rng.integers(rows // 4, 3 * rows // 4), rng.integers(cols // 4, 3 * cols // 4)
    blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (rows / 6) ** 2))
    base = 0.3 + 0.5 * (x / cols) * (y / rows) + 0.4 * blob + 0.05 * rng.random((rows, cols))
    top = (1 << bits) - 1
    return np.clip(base / base.max() * top, 0, top).astype(np.uint16 if bits > 8 else np.uint8)


# ---------------------------------------------------------------------------------------------
# Figure-like pictures (the near-duplicate set): photographs and charts


def photo_like(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth colour field with fine grain, like a photograph or a histology field."""
    grid = rng.normal(size=(int(rng.integers(4, 12)), int(rng.integers(4, 12)), 3))
    grid = (grid - grid.min()) / max(1e-9, np.ptp(grid))
    base = Image.fromarray((grid * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    detail = rng.normal(0, 12, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(base, np.float32) + detail, 0, 255).astype(np.uint8))


def bar_chart(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A white chart with coloured bars and a black line across them."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    w, h = size
    n = int(rng.integers(3, 9))
    for i in range(n):
        x0 = int(w * (0.1 + 0.8 * i / n))
        top = int(h * (0.15 + 0.7 * rng.random()))
        color = tuple(int(c) for c in rng.integers(0, 200, 3))
        draw.rectangle([x0, top, x0 + int(0.6 * w / n), int(h * 0.9)], fill=color)
    points = [
        (int(w * x), int(h * (0.1 + 0.8 * rng.random()))) for x in np.linspace(0.05, 0.95, 12)
    ]
    draw.line(points, fill=(0, 0, 0), width=3)
    return image


# ---------------------------------------------------------------------------------------------
# Encoding


def encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    """The image as file bytes: JPEG (grey stays grey, anything else becomes RGB) or `fmt`."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB" if img.mode == "RGB" else "L").save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def write_file(path: str | Path, data: bytes) -> None:
    """Write `data` to `path`, creating its folder first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def dicom_dataset(sop_class: str, instance_uid: str, transfer_syntax: Any) -> Dataset:
    """An empty DICOM dataset whose file meta and SOP identity agree (the part every demo
    DICOM writer needs before its own attributes)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds
