"""Rule chains: the catalogue of registered rules and the stage that applies them in order.

Importing this module registers every built-in rule and alias (`builtin`, `image_quality`), so
a name in a rule file always resolves; the registry itself imports no rule module.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from curate.errors import SpecError
from curate.rules import builtin, image_quality
from curate.rules.registry import Filter, registered_here
from curate.stages import Record, Rejected, Stage

BUILTIN_MODULES = (builtin, image_quality)


def registered_rules() -> dict[str, type[Filter]]:
    return registered_here()


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
