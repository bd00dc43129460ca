"""Rule registry: datatrove-style filters with versioned names (mechanism only; the built-in
rules live in `builtin` and `image_quality`, and `chain` applies them).

A rule is a class with a versioned `name` (`caption_words.v1`) whose `filter(record)` returns
`True` (keep), `False` (drop, reason = the rule's default reason) or `(False, "reason")`.
A behaviour change registers `.v2` and keeps `.v1`, so old specs still reproduce.
An old name for a rule that was merged into another stays registered as an alias
(`register_alias`): one class does the job, the old name keeps its parameters and behaviour.
Rule files in `curation_rules/` pick rules, their order and parameters; they never contain
expressions.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from curate.stages import Record

_REGISTRY: dict[str, type[Filter]] = {}


class Filter:
    """Keep/drop decision on one record. Subclasses set `name` and `default_reason`."""

    name: ClassVar[str] = ""
    default_reason: ClassVar[str] = "filtered"
    # The canonical rule's name when this class is an alias (see `register_alias`).
    alias_of: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self.params = params

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        raise NotImplementedError


def register_rule(cls: type[Filter]) -> type[Filter]:
    _require_versioned(cls.name, cls.__name__)
    _claim(cls.name, cls)
    return cls


def register_alias(
    name: str,
    canonical: type[Filter],
    renames: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> type[Filter]:
    """Register `name` as an old name of the registered rule `canonical`.

    The alias takes the old parameter names (`renames`: old name -> canonical name) with the old
    `defaults` (keyed by old name), and sets the canonical options in `fixed`, which the old rule
    behaved by and which its users cannot change. It drops with the canonical reason (one reason
    per rule) and keeps its own name, so a rejected record's stage names the rule as written.
    """
    _require_versioned(name, name)
    if _REGISTRY.get(canonical.name) is not canonical:
        raise ValueError(f"alias {name}: {canonical.__name__} is not a registered rule")
    renames, defaults, fixed = dict(renames or {}), dict(defaults or {}), dict(fixed or {})
    signature = _alias_signature(name, canonical, renames, defaults, fixed)

    def __init__(self: Filter, **params: Any) -> None:
        given = {**defaults, **params}
        canonical.__init__(self, **{renames.get(k, k): v for k, v in given.items()}, **fixed)

    # `instantiate` reads the accepted parameters from the signature: the old ones, not `**`.
    __init__.__signature__ = signature  # type: ignore[attr-defined]
    class_name = "".join(part.title() for part in name.split(".")[0].split("_"))
    namespace = {"name": name, "alias_of": canonical.name, "__init__": __init__}
    namespace["__doc__"] = f"`{name}`: an old name of `{canonical.name}` (same reason)."
    alias = type(class_name, (canonical,), namespace)
    _claim(name, alias)
    return alias


def _alias_signature(
    name: str,
    canonical: type[Filter],
    renames: dict[str, str],
    defaults: dict[str, Any],
    fixed: dict[str, Any],
) -> inspect.Signature:
    """The canonical signature with the old parameter names and defaults, less `fixed`."""
    own = list(inspect.signature(canonical.__init__).parameters.values())[1:]
    accepted = {p.name for p in own}
    unknown = sorted((set(renames.values()) | set(fixed)) - accepted)
    if unknown:
        raise ValueError(f"alias {name}: {canonical.name} has no parameters {unknown}")
    old_name = {new: old for old, new in renames.items()}
    params = [
        p.replace(
            name=old_name.get(p.name, p.name),
            kind=inspect.Parameter.KEYWORD_ONLY,
            default=defaults.get(old_name.get(p.name, p.name), p.default),
        )
        for p in own
        if p.name not in fixed
    ]
    stray = sorted(set(defaults) - {p.name for p in params})
    if stray:
        raise ValueError(f"alias {name}: defaults for parameters it does not take: {stray}")
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([this, *params])


def _require_versioned(name: str, what: str) -> None:
    if not name or ".v" not in name:
        raise ValueError(f"rule {what} needs a versioned name like 'caption_words.v1'")


def _claim(name: str, cls: type[Filter]) -> None:
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"rule name {name} registered twice")
    _REGISTRY[name] = cls


def registered_here() -> dict[str, type[Filter]]:
    """The rules and aliases registered so far (`curate.rules.chain` imports the built-ins)."""
    return dict(_REGISTRY)
