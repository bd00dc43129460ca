"""Brightened copies clip their highlights: the unclipped-gradient test still confirms them."""

from __future__ import annotations

import numpy as np

from curate.dedup.config import NearDedupConfig
from curate.dedup.confirm import unclipped_gradient_correlation
from curate.dedup.near import find_near_duplicates
from curate.demo.near_duplicates import generate, score


def _brightness_recall(config: NearDedupConfig) -> float:
    # the demo figures of benchmarks/dedup_quality.py (photo-like and chart figures)
    planted = generate(150, 40, seed=5, variants=("reencoded", "resized", "brightness", "cropped"))
    image_only = config.model_copy(
        update={"caption": config.caption.model_copy(update={"enabled": False})}
    )
    decisions = [
        d.as_tuple() for d in find_near_duplicates([p.record for p in planted], image_only)
    ]
    result = score(planted, decisions)
    assert result["all"]["precision"] == 1.0
    return result["brightness"]["recall"]


def test_brightened_copies_are_found_only_with_the_unclipped_test() -> None:
    config = NearDedupConfig.from_rules("dedup/near_dedup.v1")
    image = config.image
    without = config.model_copy(
        update={"image": image.model_copy(update={"confirm_unclipped_gradient_min": None})}
    )
    assert _brightness_recall(config) == 1.0
    assert _brightness_recall(without) < 1.0


def test_unclipped_correlation_ignores_flat_highlights() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, size=(32, 32)).astype(np.float32)
    clipped = np.minimum(base * 1.6, 255)  # brightened: everything above ~160 turns flat white
    clipped = (clipped - clipped.min()) * 255 / (clipped.max() - clipped.min())
    thumbs = [base.round().astype(np.uint8).tobytes(), clipped.round().astype(np.uint8).tobytes()]
    plain = np.corrcoef(np.diff(base, axis=1).ravel(), np.diff(clipped, axis=1).ravel())[0, 1]
    (unclipped,) = unclipped_gradient_correlation(thumbs, 0, np.array([1]), 32, 230)
    assert plain < 0.985
    assert unclipped > 0.99
