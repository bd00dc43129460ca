"""Modality tagging from keywords (policy in curation_rules/modality.v1.yaml).

A cheap first signal that needs no model: it lets filters and instruction templates ask
"what kind of image is this" before an embedding model is available.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import yaml

from curate.resources import resource_dir
from curate.stages import Record, Rejected, Stage


class ModalityTagger(Stage):
    name = "enrich:modality"

    def __init__(self, rules_ref: str = "modality.v1") -> None:
        self.rules_ref = rules_ref
        self._patterns: list[tuple[str, re.Pattern[str]]] | None = None

    def setup(self) -> None:
        data: dict[str, Any] = yaml.safe_load(
            (resource_dir("curation_rules") / f"{self.rules_ref}.yaml").read_text()
        )
        self.field_weights: dict[str, float] = data["field_weights"]
        self.min_score = float(data["min_score"])
        self._patterns = []
        for entry in data["modalities"]:
            alternatives = "|".join(
                re.escape(k) for k in sorted(entry["keywords"], key=len, reverse=True)
            )
            self._patterns.append(
                (entry["name"], re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.I))
            )

    def classify(self, record: Record) -> str | None:
        if self._patterns is None:
            self.setup()
        assert self._patterns is not None
        best, best_score = None, 0.0
        for name, pattern in self._patterns:
            score = 0.0
            for field, weight in self.field_weights.items():
                text = record.get(field)
                if isinstance(text, str) and text:
                    score += weight * len(pattern.findall(text))
            if score > best_score:
                best, best_score = name, score
        return best if best_score >= self.min_score else None

    def process(self, record: Record) -> Iterable[Record | Rejected]:
        # A source that knows the modality (DICOM header) keeps it; text only fills gaps.
        if "modality" in record and not record.get("modality"):
            record["modality"] = self.classify(record)
        yield record


# ---- volumes: DICOM Modality codes from the spec, the header or the file name ----------------

_NAME_SPLIT = re.compile(r"[_\-.\s]+")


@cache
def _volume_name_rules(rules_ref: str) -> tuple[tuple[str, frozenset[str]], ...]:
    data: dict[str, Any] = yaml.safe_load(
        (resource_dir("curation_rules") / f"{rules_ref}.yaml").read_text()
    )
    return tuple(
        (str(entry["code"]), frozenset(str(t).lower() for t in entry["tokens"]))
        for entry in data["modalities"]
    )


def volume_modality_from_name(name: str, rules_ref: str = "volume_modality.v1") -> str | None:
    """`example_mr_sm.nii.gz` -> MR; None when no token of the name is known."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".nii.gz", ".nii", ".gz"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    tokens = {t.lower() for t in _NAME_SPLIT.split(stem) if t}
    for code, known in _volume_name_rules(rules_ref):
        if tokens & known:
            return code
    return None


def volume_modality(
    *, header: str | None = None, declared: str | None = None, file_name: str | None = None
) -> tuple[str | None, str | None]:
    """(modality, where it came from): the DICOM header first, then the spec's value, then the
    file name; (None, None) when none says."""
    if header:
        return header.strip().upper(), "dicom_header"
    if declared:
        return declared, "spec"
    if file_name:
        found = volume_modality_from_name(file_name)
        if found:
            return found, "file_name"
    return None, None
