"""Spec section `link:` — which KB, which fields, which label sets, which rule files."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.enrich.link.labels import LABEL_SET_FILES, UncertainAs

DEFAULT_FIELDS = [
    "caption",
    "fig_group_caption",
    "inline_mentions",
    "findings",
    "impression",
    "report_text",
    "sections",
]
# Labels read what the radiologist saw: findings and impression. Indication, history and
# comparison name reasons and priors ("r/o pneumonia"), so they decide labels only when a spec
# lists them. A report without any header has one `text` section: it is read instead.
DEFAULT_LABEL_FIELDS = ["findings", "impression"]
DEFAULT_LABEL_FALLBACK = ["sections.text"]


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
    label_fallback: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LABEL_FALLBACK),
        description="read when no label field has text: a field, or `field.section` of a "
        "sections list (default: the `text` section of a report without headers)",
    )
    uncertain_as: UncertainAs | dict[str, UncertainAs] | None = Field(
        default=None,
        description="map uncertain labels to positive (U-Ones) or negative (U-Zeros): one "
        "value for every label set, or per set name; None = each set's own (uncertain)",
    )
    linker_rules: str | None = Field(default=None, description="None = linking/linker.v1.yaml")
    assertion_rules: str | None = Field(
        default=None, description="None = linking/assertion.v2.yaml"
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

    def uncertain_as_for(self, label_set: str) -> UncertainAs | None:
        if isinstance(self.uncertain_as, dict):
            return self.uncertain_as.get(label_set)
        return self.uncertain_as

    @model_validator(mode="after")
    def _uncertain_as_names_sets(self) -> LinkConfig:
        if isinstance(self.uncertain_as, dict):
            unknown = sorted(set(self.uncertain_as) - set(self.label_sets))
            if unknown:
                raise ValueError(
                    f"uncertain_as names {unknown}, which are not in label_sets {self.label_sets}"
                )
        return self
