"""Image preprocessing as open_clip does it: aspect kept + centre crop for evaluation, a seeded
random resized crop for training, the old stretch on request."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from curate.train.config import VisionConfig
from curate.train.vision import ImagePreprocess, random_resized_box


def striped(width: int, height: int) -> bytes:
    """Left third red, middle green, right third blue: what a crop keeps is visible."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    third = width // 3
    array[:, :third, 0] = 255
    array[:, third : 2 * third, 1] = 255
    array[:, 2 * third :, 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def channel_means(tensor: torch.Tensor) -> list[float]:
    return [float(c) for c in (tensor * 0.5 + 0.5).mean(dim=(1, 2))]


def test_eval_keeps_the_aspect_and_crops_the_centre():
    keep = ImagePreprocess(30, (0.5,) * 3, (0.5,) * 3)
    squash = ImagePreprocess(30, (0.5,) * 3, (0.5,) * 3, resize="squash")
    wide = striped(90, 30)
    kept = channel_means(keep(wide))
    stretched = channel_means(squash(wide))
    # A centre crop of a 3:1 image is the green middle third; stretching keeps all three.
    assert kept[1] > 0.95 and kept[0] < 0.05 and kept[2] < 0.05
    assert all(0.25 < c < 0.42 for c in stretched)
    assert keep(wide).shape == (3, 30, 30)


def test_training_crops_are_random_per_sample_and_fixed_by_the_seed():
    config = VisionConfig(image_size=16, train_crop_scale=(0.2, 0.5))
    train = ImagePreprocess.from_config(config, train=True)
    evaluate = ImagePreprocess.from_config(config)
    image = striped(60, 60)
    assert torch.equal(train(image, 7), train(image, 7))
    crops = {tuple(round(c, 3) for c in channel_means(train(image, seed))) for seed in range(8)}
    assert len(crops) > 1
    # No seed (evaluation) or no crop configured: the deterministic centre crop.
    assert torch.equal(train(image), evaluate(image))
    assert torch.equal(evaluate(image, 7), evaluate(image))


@pytest.mark.parametrize("seed", range(20))
def test_random_resized_box_respects_scale_and_ratio(seed):
    left, top, right, bottom = random_resized_box((200, 100), (0.3, 0.6), (0.75, 4 / 3), seed)
    width, height = right - left, bottom - top
    assert 0 <= left < right <= 200 and 0 <= top < bottom <= 100
    assert 0.28 <= width * height / 20000 <= 0.62
    assert 0.7 <= width / height <= 1.4
