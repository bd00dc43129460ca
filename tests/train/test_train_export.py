"""The bridge: a trained CFM checkpoint loads as an embedding model; image decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from curate.errors import InputError, UnreadableImage
from curate.train.export import load_cfm_checkpoint, load_cfm_model
from curate.train.vision import ImagePreprocess


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_checkpoint_loads_as_image_and_text_encoders(trained_cfm, synthetic_out):
    image_encoder, text_encoder, preprocess = load_cfm_checkpoint(trained_cfm)
    model, tokenizer, _, _ = load_cfm_model(trained_cfm)
    from curate.shards.loader import load_shards

    rows = [
        r
        for _, r in zip(
            range(4), load_shards(synthetic_out, "validation", columns=["image", "caption"])
        )
    ]
    pixels = torch.stack([preprocess(r["image"]) for r in rows])
    assert pixels.shape == (4, 3, 32, 32)
    images = image_encoder(pixels)
    texts = text_encoder([r["caption"] for r in rows])
    assert images.shape == texts.shape == (4, 64)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(texts.norm(dim=-1), torch.ones(4))
    with torch.no_grad():
        torch.testing.assert_close(images, model.encode_image(pixels))
        ids, mask = tokenizer([r["caption"] for r in rows])
        torch.testing.assert_close(texts, model.encode_text(ids, mask))
    # Trained: each image is closest to its own caption among these four.
    similarity = images @ texts.t()
    own = similarity.diag()
    assert all(
        own[i] >= similarity[i].max() - 1e-6
        or rows[i]["caption"] in [rows[j]["caption"] for j in range(4) if j != i]
        for i in range(4)
    )


def test_run_directory_also_works_and_missing_checkpoint_is_named(trained_cfm, tmp_path):
    image_encoder, _, _ = load_cfm_checkpoint(trained_cfm.parent)
    assert image_encoder(torch.zeros(1, 3, 32, 32)).shape == (1, 64)
    with pytest.raises(InputError, match="no CFM checkpoint"):
        load_cfm_checkpoint(tmp_path)


def test_grayscale_and_16_bit_images_become_three_channels():
    preprocess = ImagePreprocess(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    gray = preprocess(png(np.full((20, 24), 255, dtype=np.uint8)))
    assert gray.shape == (3, 16, 16)
    torch.testing.assert_close(gray, torch.ones(3, 16, 16))
    halves = np.zeros((64, 64), dtype=np.uint16)
    halves[:, 32:] = 40000  # 16-bit values above 255: rescaled, not clipped
    deep = preprocess(png(halves))
    assert deep.shape == (3, 16, 16)
    torch.testing.assert_close(deep[:, :, :4], -torch.ones(3, 16, 4))
    torch.testing.assert_close(deep[:, :, 12:], torch.ones(3, 16, 4))


def test_bad_image_bytes_are_a_named_error():
    preprocess = ImagePreprocess(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(UnreadableImage):
        preprocess(b"not an image")
    with pytest.raises(UnreadableImage):
        preprocess(b"")


def test_embedding_pass_loads_the_checkpoint_through_its_plugin(trained_cfm):
    models = pytest.importorskip("curate.embed.models")
    loaded = models.load_model(f"curate_cfm:{trained_cfm}", device="cpu")
    image_encoder, text_encoder, preprocess = load_cfm_checkpoint(trained_cfm)
    caption = "a red circle in the upper left"
    vectors, issues = loaded.towers["text"].embed([caption])
    assert issues == [None]
    np.testing.assert_allclose(vectors[0], text_encoder([caption])[0].numpy(), rtol=1e-5, atol=1e-6)
