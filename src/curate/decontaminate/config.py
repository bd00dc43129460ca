"""Config of the spec section `dedup.decontam` (policy: `curation_rules/dedup/decontam.v1.yaml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from curate.rules.backed import RuleBacked


class DecontamConfig(RuleBacked):
    enabled: bool = False
    index: str | None = Field(default=None, description="folder written by `curate benchmark add`")
    image_hash: Literal["phash", "dhash"] = "phash"
    image_max_hamming: int = Field(default=6, ge=0, le=32)
    ngram: int = Field(default=13, ge=1)
    min_ngram_overlap: int = Field(default=1, ge=1)
    short_text_min_tokens: int = Field(default=8, ge=1)
    answer_window: int = Field(default=12, ge=0)
    text_fields: list[str] = Field(
        default_factory=lambda: ["caption", "report_text", "findings", "impression"]
    )

    @model_validator(mode="after")
    def _needs_index(self) -> DecontamConfig:
        if self.enabled and not self.index:
            raise ValueError("decontamination is enabled but no `index` folder is given")
        return self
