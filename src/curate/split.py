"""Group-level split assignment: every record of one group (patient, article) lands in one split.

`assign_split` hashes `<seed>:<group_key>` with SHA-256 (stable across Python runs and
machines, unlike `hash()`), maps the first 8 bytes to a number in [0, 1) and picks the split
whose cumulative ratio interval holds it. Splits are visited in a fixed order (train,
validation, test, then any others alphabetically), so the result does not depend on the order
of the ratios mapping in the spec.

Convention for preset splits: a source that knows an official split (MIMIC-CXR's split CSV)
writes it into `record["split"]`. A non-null `split` before phase 2 is preset and wins over the
hash (`resolve_split`); the engine only assigns records whose `split` is null.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from curate.errors import SpecError

_ORDER = ("train", "validation", "test")


def _ordered(ratios: dict[str, float]) -> list[tuple[str, float]]:
    known = [(name, ratios[name]) for name in _ORDER if name in ratios]
    others = sorted((name, value) for name, value in ratios.items() if name not in _ORDER)
    return known + others


def check_ratios(ratios: dict[str, float]) -> None:
    if not ratios:
        raise SpecError("split ratios are empty")
    for name, value in ratios.items():
        if not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise SpecError(f"split ratio {name}={value!r} must be a number >= 0")
    if sum(ratios.values()) <= 0:
        raise SpecError("split ratios sum to zero")


def assign_split(group_key: str, seed: int, ratios: dict[str, float]) -> str:
    """The split of `group_key`: deterministic for (key, seed, ratios); ratios need not sum to 1."""
    check_ratios(ratios)
    digest = hashlib.sha256(f"{seed}:{group_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    ordered = [(name, value) for name, value in _ordered(ratios) if value > 0]
    total = sum(value for _, value in ordered)
    cumulative = 0.0
    for name, value in ordered:
        cumulative += value / total
        if point < cumulative:
            return name
    return ordered[-1][0]  # point within float rounding of 1.0


def resolve_split(
    record: dict[str, Any],
    group_field: str | None,
    seed: int,
    ratios: dict[str, float],
    *,
    fallback_key: str | None = None,
) -> str:
    """A preset `record['split']` wins; otherwise hash the record's group field, or
    `fallback_key` when the record has none (the engine passes the input unit, which holds one
    article or one study, so a record without its group key still shares its unit's split)."""
    preset = record.get("split")
    if preset:
        return str(preset)
    key = record.get(group_field) if group_field else None
    if key is None or key == "":
        if fallback_key is None:
            raise SpecError(
                f"record {record.get('record_id')!r} has no {group_field!r} to split by"
            )
        key = fallback_key
    return assign_split(str(key), seed, ratios)
