"""Rule registry: datatrove-style filters with versioned names (mechanism only; the built-in
rules live in `builtin` and `image_quality`, and `chain` applies them).

A rule is a class with a versioned `name` (`caption_words.v1`) whose `filter(record)` returns
`True` (keep), `False` (drop, reason = the rule's default reason) or `(False, "reason")`.
A behaviour change registers `.v2` and keeps `.v1`, so old specs still reproduce.
Rule files in `curation_rules/` pick rules, their order and parameters; they never contain
expressions.
"""

from __future__ import annotations

from typing import Any, ClassVar

from curate.stages import Record

_REGISTRY: dict[str, type[Filter]] = {}


class Filter:
    """Keep/drop decision on one record. Subclasses set `name` and `default_reason`."""

    name: ClassVar[str] = ""
    default_reason: ClassVar[str] = "filtered"

    def __init__(self, **params: Any) -> None:
        self.params = params

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        raise NotImplementedError


def register_rule(cls: type[Filter]) -> type[Filter]:
    if not cls.name or ".v" not in cls.name:
        raise ValueError(f"rule {cls.__name__} needs a versioned name like 'caption_words.v1'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"rule name {cls.name} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered_here() -> dict[str, type[Filter]]:
    """The rules registered so far (`curate.rules.chain` imports the built-in modules first)."""
    return dict(_REGISTRY)
