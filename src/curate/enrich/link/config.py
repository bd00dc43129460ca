"""Spec section `link:` — which KB, which fields, which label sets, which rule files."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curate.enrich.link.labels import LABEL_SET_FILES

DEFAULT_FIELDS = [
    "caption",
    "fig_group_caption",
    "inline_mentions",
    "findings",
    "impression",
    "report_text",
    "sections",
]
DEFAULT_LABEL_FIELDS = ["findings", "impression", "report_text"]


class LinkConfig(BaseModel):
    """Entity linking with assertions, and report labels.

    `kb` is `"default"` (HPO + radiology lexicon, built offline into `kb_cache` on first use)
    or the path of a folder written by `curate kb build`. Text fields may hold a string, a list
    of strings (entity `field` is `name[i]`), or a mapping of section name to text (`name.key`).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    kb: str = "default"
    kb_cache: str | None = Field(
        default=None, description="where the default KB is built; None = ~/.cache/curate/kb"
    )
    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS))
    label_sets: list[str] = Field(
        default_factory=lambda: ["chexpert14", "chestxray14"],
        description="label sets for derived_labels; for a name in several sets the first wins",
    )
    label_fields: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LABEL_FIELDS),
        description="report fields whose mentions decide derived_labels (not indication/history)",
    )
    linker_rules: str | None = Field(default=None, description="None = linking/linker.v1.yaml")
    assertion_rules: str | None = Field(
        default=None, description="None = linking/assertion.v1.yaml"
    )
    on_huge_text: Literal["truncate", "reject"] = "truncate"

    @field_validator("label_sets")
    @classmethod
    def _known_label_sets(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in LABEL_SET_FILES and not item.endswith((".yaml", ".yml")):
                raise ValueError(
                    f"unknown label set {item!r}; use one of {sorted(LABEL_SET_FILES)} "
                    "or the path of a label-set YAML file"
                )
        return value
