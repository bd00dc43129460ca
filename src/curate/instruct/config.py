"""Spec section `instruct`: which generators run and how (pydantic v2, extra keys forbidden).

Policy (templates, phrasings, prompts, refusal patterns) lives in `curation_rules/`; this model
only says which of those files to use and how to reach the LLM endpoint.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TemplatedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    templates: str = Field(
        "chexinstruct.v1",
        description="template file stem in curation_rules/templates/ (versioned); the file's "
        "`kind` picks CheXinstruct-style tasks (chexinstruct.v1) or caption attribute questions "
        "(caption_attributes.v1)",
    )
    tasks: list[str] | None = Field(
        None,
        description="task names to run (e.g. coarse.view_classification, attribute.shape); "
        "None = all",
    )


class LLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="any OpenAI-compatible endpoint")
    model: str = "llava-med-teacher"
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="name of the environment variable holding the key (never the key itself); "
        "None for endpoints that need no key",
    )
    prompt: str = Field(
        "llava_med_conversation.v1", description="prompt file stem in curation_rules/prompts/"
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1)
    concurrency: int = Field(8, ge=1, le=512)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(
        5, ge=0, description="our own retries; the openai client's are disabled"
    )
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    cache_dir: str = Field(".curate_cache/llm", description="content-addressed answer cache")
    budget_requests: int | None = Field(None, ge=0, description="max HTTP requests this run")
    budget_tokens: int | None = Field(
        None, ge=0, description="max prompt+completion tokens this run"
    )
    price_per_1k_input: float = Field(0.0, ge=0)
    price_per_1k_output: float = Field(0.0, ge=0)


class VerifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: str = Field("verify.v1", description="verification file stem in curation_rules/prompts/")
    grounding: Literal["drop", "flag", "off"] = "drop"
    concept_extractor: str = Field(
        "lexicon",
        description="'lexicon' (entities on the record + the finding lexicon) or 'module:factory' "
        "naming a zero-argument factory that returns a callable text -> set[str]",
    )


class InstructConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    generators: list[Literal["templated", "llm"]] = Field(
        default_factory=lambda: ["templated"],  # type: ignore[arg-type]
        description="templated works offline; llm needs an endpoint",
    )
    include_image: bool = Field(
        False,
        description="copy the source image bytes into each instruction (self-contained shards); "
        "by default rows keep only image_sha256 and readers join the bytes from the record shards",
    )
    distractor_pool_size: int = Field(256, ge=0, description="per-split sample for matching tasks")
    batch_size: int = Field(64, ge=1, description="records per batch in the Beam transform")
    templated: TemplatedOptions = Field(default_factory=TemplatedOptions)
    llm: LLMOptions = Field(default_factory=LLMOptions)
    verify: VerifyOptions = Field(default_factory=VerifyOptions)

    @model_validator(mode="after")
    def _generators_unique(self) -> InstructConfig:
        if len(set(self.generators)) != len(self.generators):
            raise ValueError(f"generators listed twice: {self.generators}")
        return self
