"""Rule registry: datatrove-style filters with versioned names.

A rule is a class with a versioned `name` (`caption_words.v1`) whose `filter(record)` returns
`True` (keep), `False` (drop, reason = the rule's default reason) or `(False, "reason")`.
A behaviour change registers `.v2` and keeps `.v1`, so old specs still reproduce.
Rule files in `curation_rules/` pick rules, their order and parameters; they never contain
expressions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from curate.errors import SpecError
from curate.stages import Record, Rejected, Stage

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


def _load_builtin_rules() -> None:
    # Importing the modules registers their classes; done lazily so importing the registry
    # stays cheap and free of cycles.
    from curate.rules import builtin  # noqa: F401


def registered_rules() -> dict[str, type[Filter]]:
    _load_builtin_rules()
    return dict(_REGISTRY)


def get_rule(name: str) -> type[Filter]:
    rules = registered_rules()
    if name not in rules:
        raise SpecError(f"unknown rule {name!r}; registered: {sorted(rules)}")
    return rules[name]


def instantiate(name: str, params: dict[str, Any]) -> Filter:
    cls = get_rule(name)
    accepted = inspect.signature(cls.__init__).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(params) - set(accepted) - {"self"})
        if unknown:
            raise SpecError(f"rule {name}: unknown parameters {unknown}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise SpecError(f"rule {name}: {exc}") from exc


class RuleChain(Stage):
    """Apply filters in order; the first that drops a record names the reason."""

    def __init__(self, filters: list[Filter], name: str = "rules") -> None:
        self.filters = filters
        self.name = name

    def process(self, record: Record) -> Iterable[Record | Rejected]:
        for rule in self.filters:
            verdict = rule.filter(record)
            keep, reason = verdict if isinstance(verdict, tuple) else (verdict, rule.default_reason)
            if not keep:
                yield Rejected(record=record, reason=reason, stage=f"{self.name}:{rule.name}")
                return
        yield record

    @classmethod
    def from_file(cls, path: Path, name: str = "rules") -> RuleChain:
        data = yaml.safe_load(Path(path).read_text())
        return cls.from_config(data, name=name, where=str(path))

    @classmethod
    def from_config(cls, data: dict[str, Any], name: str = "rules", where: str = "") -> RuleChain:
        if not isinstance(data, dict) or "rules" not in data:
            raise SpecError(f"{where}: a rule file needs a `rules` list")
        filters = []
        for entry in data["rules"]:
            filters.append(instantiate(entry["rule"], dict(entry.get("params") or {})))
        return cls(filters, name=name)
