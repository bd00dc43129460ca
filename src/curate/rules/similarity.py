"""Image-text similarity (a CLIP-score style quality signal) and its config, the spec section
`dedup.quality` (policy: `curation_rules/dedup/quality.v1.yaml`). Records whose image and
caption embeddings (one model's two towers) agree too little are dropped in phase 2."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from curate.errors import SpecError
from curate.rules.backed import RuleBacked

if TYPE_CHECKING:  # numpy only where scores are computed: the spec imports this module
    import numpy as np

LOW_SIMILARITY_REASON = "low_image_text_similarity"


class QualityConfig(RuleBacked):
    enabled: bool = False
    min_clip_score: float | None = None
    keep_top_fraction: float | None = Field(default=None, gt=0.0, le=1.0)
    image_rules: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"rule": "image_not_blank.v1", "params": {"min_std": 3.0}},
            {"rule": "image_min_size.v1", "params": {"min_short_side": 64}},
            {"rule": "image_aspect_ratio.v1", "params": {"max_aspect": 5.0}},
        ]
    )

    @model_validator(mode="after")
    def _one_policy(self) -> QualityConfig:
        if self.min_clip_score is not None and self.keep_top_fraction is not None:
            raise ValueError("set min_clip_score or keep_top_fraction, not both")
        return self


def clip_scores(
    image_vectors: Mapping[str, np.ndarray],
    text_vectors: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Cosine similarity of each record's image and text embedding (same model, both towers)."""
    import numpy as np

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
    keep = max(1, math.ceil(config.keep_top_fraction * len(ordered)))
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
    from curate.rules.chain import RuleChain

    return RuleChain.from_config({"rules": config.image_rules}, name="quality")
