"""Quality: image heuristics as versioned rules, and a CLIP-score style image-text similarity.

The image rules are registered filters (`curate.rules.registry`), picked and parameterised in
`curation_rules/dedup/quality.v1.yaml`:

- `image_not_blank.v1`: drop images whose grayscale standard deviation is below `min_std`
  (blank, uniform or nearly so: placeholders, failed renders);
- `image_min_size.v1`: drop images whose short side is below `min_short_side` pixels;
- `image_aspect_ratio.v1`: drop images whose long/short side ratio exceeds `max_aspect`
  (strips, banners, separators; DataComp uses 3 for web images, figures need more room).

Records without image bytes pass (they are text records; other rules judge them). Unreadable
bytes raise `UnreadableImage`, which the stage turns into an error with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from curate.dedup.config import QualityConfig
from curate.dedup.imagehash import DEFAULT_MAX_PIXELS, grayscale, open_image
from curate.errors import SpecError
from curate.rules.registry import Filter, register_rule
from curate.stages import Record

LOW_SIMILARITY_REASON = "low_image_text_similarity"


def _size(record: Record, max_pixels: int) -> tuple[int, int] | None:
    width, height = record.get("image_width"), record.get("image_height")
    if width and height:
        return int(width), int(height)
    data = record.get("image")
    if not data:
        return None
    return open_image(data, max_pixels).size


@register_rule
class ImageNotBlank(Filter):
    name = "image_not_blank.v1"
    default_reason = "blank_image"

    def __init__(self, min_std: float = 3.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(min_std=min_std, max_pixels=max_pixels)
        self.min_std = float(min_std)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        data = record.get("image")
        if not data:
            return True
        # A 64x64 thumbnail keeps the spread of real content and is cheap to compute.
        pixels = grayscale(data, (64, 64), self.max_pixels)
        return float(pixels.std()) >= self.min_std


@register_rule
class ImageMinSize(Filter):
    name = "image_min_size.v1"
    default_reason = "image_too_small"

    def __init__(self, min_short_side: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(min_short_side=min_short_side, max_pixels=max_pixels)
        self.min_short_side = int(min_short_side)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        size = _size(record, self.max_pixels)
        return size is None or min(size) >= self.min_short_side


@register_rule
class ImageAspectRatio(Filter):
    name = "image_aspect_ratio.v1"
    default_reason = "extreme_aspect_ratio"

    def __init__(self, max_aspect: float = 5.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(max_aspect=max_aspect, max_pixels=max_pixels)
        self.max_aspect = float(max_aspect)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        size = _size(record, self.max_pixels)
        if size is None:
            return True
        return max(size) / max(1, min(size)) <= self.max_aspect


# ---- image-text similarity ------------------------------------------------------------------


def clip_scores(
    image_vectors: Mapping[str, np.ndarray],
    text_vectors: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Cosine similarity of each record's image and text embedding (same model, both towers)."""
    out: dict[str, float] = {}
    for rid in sorted(set(image_vectors) & set(text_vectors)):
        a = np.asarray(image_vectors[rid], dtype=np.float32)
        b = np.asarray(text_vectors[rid], dtype=np.float32)
        denom = float(np.linalg.norm(a) * np.linalg.norm(b)) or 1e-12
        out[rid] = float(a @ b) / denom
    return out


def clip_scores_from_sidecars(image_path: str, text_path: str) -> dict[str, float]:
    """Scores from the two embedding sidecars of one image-text model (re-tune without re-embedding)."""
    from curate.embed.beam import read_sidecar

    image_ids, image_matrix, image_models = read_sidecar(image_path)
    text_ids, text_matrix, text_models = read_sidecar(text_path)
    if image_models != text_models:
        raise SpecError(
            f"image and text embeddings come from different models ({sorted(image_models)} vs "
            f"{sorted(text_models)}): an image-text score needs one model's two towers"
        )
    return clip_scores(dict(zip(image_ids, image_matrix)), dict(zip(text_ids, text_matrix)))


def score_cutoff(scores: Mapping[str, float], config: QualityConfig) -> float | None:
    """The score below which records are dropped, or None when no similarity policy is set.

    With `keep_top_fraction` f, the cutoff is the score of the ceil(f*n)-th best record, so
    exactly that many records (plus exact ties) stay.
    """
    if config.min_clip_score is not None:
        return float(config.min_clip_score)
    if config.keep_top_fraction is None or not scores:
        return None
    ordered = sorted(scores.values(), reverse=True)
    keep = max(1, int(np.ceil(config.keep_top_fraction * len(ordered))))
    return ordered[keep - 1]


def low_similarity(
    scores: Mapping[str, float], config: QualityConfig
) -> list[tuple[str, str, float]]:
    """(record_id, reason, score) for records below the cutoff."""
    cutoff = score_cutoff(scores, config)
    if cutoff is None:
        return []
    return [(rid, LOW_SIMILARITY_REASON, s) for rid, s in sorted(scores.items()) if s < cutoff]


def quality_rule_chain(config: QualityConfig) -> Any:
    """The image heuristics of `config.image_rules` as a `RuleChain` stage."""
    from curate.rules.registry import RuleChain

    return RuleChain.from_config({"rules": config.image_rules}, name="quality")
