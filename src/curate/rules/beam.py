"""Beam transform of the image-text similarity rule: decisions for low-similarity records."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np

from curate.rules.similarity import LOW_SIMILARITY_REASON, QualityConfig, score_cutoff


def _cosine(item: tuple[str, dict[str, list[Any]]]) -> list[tuple[str, float]]:
    record_id, towers = item
    if not (towers["image"] and towers["text"]):
        return []
    image, text = towers["image"][0], towers["text"][0]
    norms = float(np.linalg.norm(image) * np.linalg.norm(text))
    return [(record_id, float(np.dot(image, text) / max(1e-12, norms)))]


def _below(item: tuple[str, float], cutoff: float | None) -> list[tuple[str, str, None]]:
    return (
        [(item[0], LOW_SIMILARITY_REASON, None)] if cutoff is not None and item[1] < cutoff else []
    )


class QualityScores(beam.PTransform):
    """{"image": (record_id, vec), "text": (record_id, vec)} -> decisions for low similarity.

    Apply to a dict of the two embedding PCollections (same model, both towers):
    `{"image": img, "text": txt} | QualityScores(config)`.
    """

    def __init__(self, config: QualityConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, towers: dict) -> beam.PCollection:
        scores = towers | "JoinTowers" >> beam.CoGroupByKey() | "Score" >> beam.FlatMap(_cosine)
        cutoff = (
            scores
            | "AllScores" >> beam.combiners.ToDict()
            | "Cutoff" >> beam.Map(score_cutoff, self.config)
        )
        return scores | "BelowCutoff" >> beam.FlatMap(
            _below, cutoff=beam.pvalue.AsSingleton(cutoff)
        )
