"""The gradient hash (curate.dedup.confirm.gradient_hash): a second way to propose image pairs,
for images whose pHash is unstable (energy outside its 8x8 lowest frequencies)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from curate.dedup.config import NearDedupConfig
from curate.dedup.confirm import gradient_hash
from curate.dedup.imagehash import phash
from curate.dedup.near import find_near_duplicates
from curate.dedup.sidecar import near_sidecar_fingerprint


def _thumb(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8), "L")
    return np.asarray(coarse.resize((32, 32), Image.Resampling.BICUBIC)).tobytes()


def test_hash_is_fixed_across_machines_and_tracks_the_gradient_angle():
    # the projections come from SHAKE-256, not a NumPy generator: this value may never change
    # without a new sidecar fingerprint (sidecars made elsewhere are compared bit for bit)
    i = np.arange(32)
    pattern = (np.multiply.outer(i, i) * 7 + np.add.outer(3 * i, 5 * i)) % 251
    fixed = pattern.astype(np.uint8).tobytes()
    assert gradient_hash(fixed, 32) == 0x90E09DC15D73060B
    a, b = _thumb(1), _thumb(2)
    noisy = np.clip(
        np.frombuffer(a, np.uint8) + np.random.default_rng(0).normal(0, 2, 1024), 0, 255
    ).astype(np.uint8)
    near = (gradient_hash(a, 32) ^ gradient_hash(noisy.tobytes(), 32)).bit_count()
    far = (gradient_hash(a, 32) ^ gradient_hash(b, 32)).bit_count()
    assert near <= 8 < 20 <= far
    assert gradient_hash(bytes(1024), 32) is None  # a flat image has no gradients
    assert gradient_hash(None, 32) is None


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.realdata
def test_a_copy_whose_phash_moved_is_proposed_by_the_gradient_hash(realdata):
    """nibabel's 0.dcm, a stripe ramp: its pHash moves more than 8 bits under re-encoding, so
    the pHash search alone never proposes the copy."""
    import pydicom

    pixels = pydicom.dcmread(realdata / "dicom/nibabel/0.dcm").pixel_array.astype(np.float32)
    gray = (pixels - pixels.min()) / max(float(np.ptp(pixels)), 1.0) * 255
    image = Image.fromarray(gray.astype(np.uint8), "L")
    original, copy = _jpeg(image, 92), _jpeg(image, 35)
    assert (phash(original) ^ phash(copy)).bit_count() > 8
    records = [
        {"record_id": "a", "image": original, "caption": ""},
        {"record_id": "b", "image": copy, "caption": ""},
    ]
    config = NearDedupConfig(caption={"enabled": False}, image={"crop": {"enabled": False}})
    assert [d.as_tuple()[0] for d in find_near_duplicates(records, config)] == ["b"]
    off = NearDedupConfig(
        caption={"enabled": False}, image={"crop": {"enabled": False}, "gradient_hash_max": None}
    )
    assert find_near_duplicates(records, off) == []


def test_sidecars_made_without_the_gradient_hash_are_recomputed():
    on = NearDedupConfig()
    off = NearDedupConfig(image={"gradient_hash_max": None})
    assert near_sidecar_fingerprint(on) != near_sidecar_fingerprint(off)


@pytest.mark.realdata
def test_a_brightened_real_mr_proposed_only_by_the_gradient_hash_passes_the_usual_checks(realdata):
    """nibabel's 384x384 MR brightened by 24%: the clipped highlights move its pHash 10 bits, so
    only the gradient hash proposes the pair. It then passes the checks any pair passes; the
    former stricter gate for such pairs (`gradient_hash_confirm_min` 0.995) refused it."""
    import pydicom

    pixels = pydicom.dcmread(
        realdata / "dicom/nibabel/slicethickness_empty_string.dcm"
    ).pixel_array.astype(np.float32)
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    gray = (np.clip((pixels - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(gray, "L")
    original, copy = _jpeg(image, 92), _jpeg(ImageEnhance.Brightness(image).enhance(1.24), 92)
    assert (phash(original) ^ phash(copy)).bit_count() > 8
    records = [
        {"record_id": "a", "image": original, "caption": ""},
        {"record_id": "b", "image": copy, "caption": ""},
    ]
    image_only = {"caption": {"enabled": False}, "image": {"crop": {"enabled": False}}}
    assert [
        d.as_tuple()[0] for d in find_near_duplicates(records, NearDedupConfig(**image_only))
    ] == ["b"]
    gated = NearDedupConfig(
        caption={"enabled": False},
        image={"crop": {"enabled": False}, "gradient_hash_confirm_min": 0.995},
    )
    assert find_near_duplicates(records, gated) == []
