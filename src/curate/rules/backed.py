"""Config models backed by rule files: `curation_rules/**/*.yaml` where every parameter is
written as `name: {value: ..., why: "..."}`. A spec section may name a rule file with `rules:`
and override single values next to it; values not given come from the model defaults, which
equal the shipped rule files (tests keep them in step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

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


class RuleBacked(BaseModel):
    """A config model whose values may come from a rule file named by `rules:`, with single
    values overridden next to it."""

    model_config = ConfigDict(extra="forbid")

    rules: str | None = Field(default=None, description="rule file the values come from")

    @model_validator(mode="before")
    @classmethod
    def _load_rules(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rules"):
            try:
                loaded = load_rule_file(str(data["rules"]))
            except SpecError as exc:
                # A validation error, so the spec's problem list names this section's line.
                raise PydanticCustomError("rule_file", "{message}", {"message": str(exc)}) from exc
            return _merge(loaded, {k: v for k, v in data.items()})
        return data

    @classmethod
    def from_rules(cls, ref: str, **overrides: Any):
        load_rule_file(ref)  # a missing or malformed file stays a SpecError for the command line
        return cls.model_validate({"rules": ref, **overrides})
