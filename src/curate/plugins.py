"""Phase-2 transforms contributed by optional packages (dedup, quality, decontamination,
instructions). Each is added only when the spec has its section, so the core build needs none
of their dependencies."""

from __future__ import annotations

from typing import Any

from curate.spec import Spec


def phase2_drop_transforms(spec: Spec, pipeline: Any, kept_paths: Any, out_dir: str) -> list[Any]:
    """PCollections of (record_id, (stage, reason, duplicate_of)) for records to drop."""
    return []


def instruction_transform(spec: Spec, kept: Any, out_dir: str, settings: Any) -> None:
    """Generate instruction records from kept records and write them under instructions/."""
    return None
