"""Config of the spec section `dedup.decontam` (policy: `curation_rules/dedup/decontam.v2.yaml`;
`decontam.v1` is verbatim matching only).

The model defaults equal `decontam.v2`. A rule file written before semantic matching existed
(v1: no `semantic` section) keeps its behaviour: semantic matching off.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.errors import SpecError
from curate.rules.backed import RuleBacked, load_rule_file


class SemanticMatchConfig(BaseModel):
    """Paraphrase matching: record sentences against the index's question embeddings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str = Field(
        default="minilm",
        description="text embedding model (curate.embed.models) of `curate benchmark add`; the "
        "build embeds records with the model the index names and skips a benchmark whose "
        "model differs from this one",
    )
    min_cosine: float = Field(default=0.8, gt=0.0, le=1.0)
    min_sentence_tokens: int = Field(default=3, ge=1)
    short_needs_question: bool = Field(
        default=True,
        description="a short benchmark question matches only a record sentence that is a "
        "question itself (ends in '?' or opens with a question word)",
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    batch_size: int = Field(default=64, ge=1, le=65536)


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
    semantic: SemanticMatchConfig = Field(
        default_factory=SemanticMatchConfig,
        description="paraphrase matching through the embedding pass (off in rule files < v2)",
    )

    @model_validator(mode="before")
    @classmethod
    def _older_rule_files_match_verbatim_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rules") and "semantic" not in data:
            try:
                loaded = load_rule_file(str(data["rules"]))
            except SpecError:
                return data  # RuleBacked reports the missing file against the spec line
            if "semantic" not in loaded:
                return {**data, "semantic": {"enabled": False}}
        return data

    @model_validator(mode="after")
    def _needs_index(self) -> DecontamConfig:
        if self.enabled and not self.index:
            raise ValueError("decontamination is enabled but no `index` folder is given")
        return self
