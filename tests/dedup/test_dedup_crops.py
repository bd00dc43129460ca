"""Crop-tolerant image near-dup (curate.dedup.crops): border crops found, others refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curate.dedup.config import CropNearConfig, NearDedupConfig
from curate.dedup.crops import CropAligner, box_weights, crop_signals, min_crop_distance
from curate.dedup.near import find_near_duplicates
from curate.demo.near_duplicates import generate, score


def _image_only(crop: bool) -> NearDedupConfig:
    return NearDedupConfig(caption={"enabled": False}, image={"crop": {"enabled": crop}})


@pytest.fixture(scope="module")
def planted():
    return generate(30, 8, seed=3, variants=("cropped",))


def test_border_crops_are_found_only_with_the_crop_search(planted):
    records = [p.record for p in planted]
    found = score(planted, [d.as_tuple() for d in find_near_duplicates(records, _image_only(True))])
    assert found["cropped"]["recall"] >= 0.8
    assert found["all"]["precision"] == 1.0
    without = score(
        planted, [d.as_tuple() for d in find_near_duplicates(records, _image_only(False))]
    )
    assert without["cropped"]["recall"] < found["cropped"]["recall"]


def _texture(seed: int, size: int = 240) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.random((12, 12)) * 255
    image = Image.fromarray(coarse.astype(np.uint8), "L").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return image


def _gray(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def test_aligner_scores_an_uneven_crop_above_an_unrelated_image():
    config = CropNearConfig()
    original = _texture(1)
    crop = original.crop((5, 20, 228, 232))  # 2% left, 8% top, 5% right, 3% bottom
    _, big = crop_signals(_gray(original), config)
    _, small = crop_signals(_gray(crop), config)
    _, other = crop_signals(_gray(_texture(2).crop((5, 20, 228, 232))), config)
    aligner = CropAligner(config)
    ratio = (223 / 212) / 1.0
    assert aligner.score(big, small, ratio) >= config.gradient_min
    assert aligner.score(big, other, ratio) < 0.9
    # a box must give the crop's shape: an impossible aspect ratio matches nothing
    assert aligner.score(big, small, 2.0) == -1.0


def test_centre_hashes_bring_a_crop_within_reach():
    config = CropNearConfig()
    original = _texture(4)
    crop = original.crop((12, 12, 228, 228))  # 5% each side: the centre 90%
    hashes_a, _ = crop_signals(_gray(original), config)
    hashes_b, _ = crop_signals(_gray(crop), config)
    from curate.dedup.imagehash import phash

    buf = io.BytesIO()
    crop.save(buf, "PNG")
    full_b = phash(buf.getvalue())
    assert min_crop_distance(hashes_a, [full_b]) <= config.max_hamming
    assert len(hashes_a) == len(config.scales) and len(hashes_b) == len(config.scales)


def test_box_weights_average_areas():
    weights = box_weights(64, 16, 0.0, 1.0)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights[0, :4], 0.25) and np.allclose(weights[0, 4:], 0.0)
    half = box_weights(64, 16, 0.5, 1.0)
    assert np.allclose(half[0, 32:34], 0.5)
