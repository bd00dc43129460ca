"""Image heuristics as registered rules, and CLIP-score style similarity policy."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curate.errors import UnreadableImage
from curate.rules.chain import get_rule
from curate.rules.similarity import (
    QualityConfig,
    clip_scores,
    low_similarity,
    quality_rule_chain,
    score_cutoff,
)
from curate.stages import Rejected, run_chain


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_rules_are_registered():
    for name in ("image_not_blank.v1", "image_min_size.v1", "image_aspect_ratio.v1"):
        assert get_rule(name).name == name
    # The two size rules are old names (aliases) of the canonical size rules.
    assert get_rule("image_min_size.v1").alias_of == "image_min_side.v1"
    assert get_rule("image_aspect_ratio.v1").alias_of == "aspect_ratio.v1"


def test_quality_chain_drops_with_reasons():
    rng = np.random.default_rng(0)
    records = [
        {"record_id": "ok", "image": _png(rng.integers(0, 255, (120, 160)))},
        {"record_id": "blank", "image": _png(np.full((120, 160), 250))},
        {"record_id": "tiny", "image": _png(rng.integers(0, 255, (30, 40)))},
        {"record_id": "strip", "image": _png(rng.integers(0, 255, (70, 600)))},
        {"record_id": "text-only", "image": None},
        {"record_id": "broken", "image": b"GIF89a-broken"},
    ]
    result = run_chain([quality_rule_chain(QualityConfig.from_rules("dedup/quality.v1"))], records)
    assert [r["record_id"] for r in result.kept] == ["ok", "text-only"]
    assert [(r.record["record_id"], r.reason) for r in result.rejected] == [
        ("blank", "blank_image"),
        ("tiny", "image_too_small"),
        ("strip", "aspect_ratio_extreme"),
    ]
    assert all(isinstance(r, Rejected) for r in result.rejected)
    assert [(f.record_id, f.reason) for f in result.failed] == [("broken", "unreadable_image")]
    assert result.counts["quality"].balanced


def test_blank_rule_raises_on_unreadable():
    with pytest.raises(UnreadableImage):
        get_rule("image_not_blank.v1")().filter({"image": b"not an image"})


def test_clip_score_threshold_and_top_fraction():
    image = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([0.6, 0.8])}
    text = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.0]), "c": np.array([1.0, 0.0])}
    scores = clip_scores(image, text)
    assert scores == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.6})
    assert low_similarity(scores, QualityConfig(min_clip_score=0.5)) == [
        ("b", "low_image_text_similarity", 0.0)
    ]
    top = QualityConfig(keep_top_fraction=0.34)  # ceil(0.34 * 3) = 2 kept
    assert score_cutoff(scores, top) == pytest.approx(0.6)
    assert [r[0] for r in low_similarity(scores, top)] == ["b"]
    assert low_similarity(scores, QualityConfig()) == []
    with pytest.raises(ValueError):
        QualityConfig(min_clip_score=0.2, keep_top_fraction=0.3)


def test_quality_scores_beam_top_fraction():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from curate.rules.beam import QualityScores

    image = [("a", np.array([1.0, 0.0])), ("b", np.array([0.0, 1.0])), ("c", np.array([0.6, 0.8]))]
    text = [("a", np.array([1.0, 0.0])), ("b", np.array([1.0, 0.0])), ("c", np.array([1.0, 0.0]))]
    with beam.Pipeline() as pipeline:
        towers = {
            "image": pipeline | "I" >> beam.Create(image),
            "text": pipeline | "T" >> beam.Create(text),
        }
        low = towers | QualityScores(QualityConfig(keep_top_fraction=0.34))
        assert_that(low, equal_to([("b", "low_image_text_similarity", None)]))


def test_scores_from_sidecars_need_one_model(tmp_path):
    from curate.embed.beam import write_sidecar
    from curate.errors import SpecError
    from curate.rules.similarity import clip_scores_from_sidecars

    image = str(tmp_path / "embeddings_image.parquet")
    text = str(tmp_path / "embeddings_text.parquet")
    write_sidecar(image, [("a", np.array([1.0, 0.0], np.float32))], "clip")
    write_sidecar(text, [("a", np.array([0.6, 0.8], np.float32))], "clip")
    assert clip_scores_from_sidecars(image, text) == pytest.approx({"a": 0.6})
    write_sidecar(text, [("a", np.array([0.6, 0.8], np.float32))], "minilm")
    with pytest.raises(SpecError):
        clip_scores_from_sidecars(image, text)
