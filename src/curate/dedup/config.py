"""Config models for near/semantic dedup, quality scoring and decontamination (spec section `dedup`).

Policy lives in `curation_rules/dedup/*.yaml`, where every parameter is written as
`name: {value: ..., why: "..."}`. A spec section may name a rule file with `rules:` and override
single values next to it; values not given come from the model defaults, which equal the shipped
rule files (a test keeps them in step).

    dedup:
      near: {rules: dedup/near_dedup.v1}
      semantic: {rules: dedup/semantic_dedup.v1, enabled: true}
      quality: {rules: dedup/quality.v1, min_clip_score: 0.2}
      decontam: {rules: dedup/decontam.v1, index: /data/bench_index}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.errors import SpecError
from curate.resources import resource_dir


def rule_values(node: Any, where: str) -> Any:
    """Strip `{value, why}` wrappers, insisting that every parameter has its `why`."""
    if isinstance(node, dict):
        if "value" in node:
            extra = set(node) - {"value", "why"}
            if extra or not str(node.get("why") or "").strip():
                raise SpecError(f"{where}: a parameter needs exactly `value` and a one-line `why`")
            return node["value"]
        return {k: rule_values(v, f"{where}.{k}") for k, v in node.items() if k != "why"}
    if isinstance(node, list):
        return [rule_values(v, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def load_rule_file(ref: str) -> dict[str, Any]:
    """`ref` is a path, or a name under curation_rules/ such as `dedup/near_dedup.v1`."""
    path = Path(ref)
    if not path.is_file():
        path = resource_dir("curation_rules") / (ref if ref.endswith(".yaml") else f"{ref}.yaml")
    if not path.is_file():
        raise SpecError(f"rule file {ref!r} not found (looked in curation_rules/ too)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a rule file must be a mapping")
    values = rule_values(data, str(path))
    for key in ("name", "version"):
        values.pop(key, None)
    return values


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _RuleBacked(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: str | None = Field(default=None, description="rule file the values come from")

    @model_validator(mode="before")
    @classmethod
    def _load_rules(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rules"):
            loaded = load_rule_file(str(data["rules"]))
            return _merge(loaded, {k: v for k, v in data.items()})
        return data

    @classmethod
    def from_rules(cls, ref: str, **overrides: Any):
        return cls.model_validate({"rules": ref, **overrides})


# ---- near duplicates -----------------------------------------------------------------------


class ImageNearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    hash: Literal["phash", "dhash"] = "phash"
    max_hamming: int = Field(default=8, ge=0, le=32)
    confirm_dhash_max: int | None = Field(default=6, ge=0, le=64)
    max_pixels: int = 200_000_000


class TextNearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    fields: list[str] = Field(default_factory=lambda: ["caption", "report_text"])
    shingle: Literal["word", "char"] = "word"
    shingle_size: int = Field(default=2, ge=1)
    num_perm: int = Field(default=128, ge=8)
    bands: int = Field(default=32, ge=1)
    rows: int = Field(default=4, ge=1)
    min_jaccard: float = Field(default=0.5, ge=0.0, le=1.0)
    min_tokens: int = Field(default=4, ge=0)
    seed: int = 1

    @model_validator(mode="after")
    def _bands_fit(self) -> TextNearConfig:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands x rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})"
            )
        return self


class NearDedupConfig(_RuleBacked):
    enabled: bool = True
    image: ImageNearConfig = Field(default_factory=ImageNearConfig)
    caption: TextNearConfig = Field(default_factory=TextNearConfig)
    keep: Literal["lowest_record_id", "highest_resolution"] = "highest_resolution"


# ---- semantic duplicates ---------------------------------------------------------------------


class SemanticDedupConfig(_RuleBacked):
    enabled: bool = False
    tower: Literal["text", "image"] = "text"
    n_clusters: int = Field(default=16, ge=1)
    sample_size: int = Field(default=20_000, ge=1)
    eps: float = Field(default=0.02, gt=0.0, lt=1.0)
    kmeans_iterations: int = Field(default=50, ge=1)
    seed: int = 0
    keep: Literal["lowest_record_id", "highest_resolution"] = "highest_resolution"


# ---- quality ---------------------------------------------------------------------------------


class QualityConfig(_RuleBacked):
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


# ---- decontamination -------------------------------------------------------------------------


class DecontamConfig(_RuleBacked):
    enabled: bool = False
    index: str | None = Field(default=None, description="folder written by `curate benchmark add`")
    image_hash: Literal["phash", "dhash"] = "phash"
    image_max_hamming: int = Field(default=6, ge=0, le=32)
    ngram: int = Field(default=13, ge=1)
    min_ngram_overlap: int = Field(default=1, ge=1)
    short_text_min_tokens: int = Field(default=8, ge=1)
    text_fields: list[str] = Field(
        default_factory=lambda: ["caption", "report_text", "findings", "impression"]
    )

    @model_validator(mode="after")
    def _needs_index(self) -> DecontamConfig:
        if self.enabled and not self.index:
            raise ValueError("decontamination is enabled but no `index` folder is given")
        return self


class DedupConfig(BaseModel):
    """The whole spec section `dedup`."""

    model_config = ConfigDict(extra="forbid")

    near: NearDedupConfig = Field(default_factory=NearDedupConfig)
    semantic: SemanticDedupConfig = Field(default_factory=SemanticDedupConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
