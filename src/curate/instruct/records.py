"""Helpers shared by both generators: source kind, source text and instruction records.

Input records are figure_caption.v1 or report_image.v1 dicts; both generators read them only
through these helpers, so a new source schema needs one change here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from curate.errors import CurateError
from curate.stages import Record


class UnknownSourceRecord(CurateError):
    """A record that is neither figure_caption.v1 nor report_image.v1."""

    reason = "unknown_source_record"


FIGURE = "figure_caption.v1"
REPORT = "report_image.v1"
INSTRUCTION_SCHEMA = "instruction.v1"

# Text fields a matching distractor pool carries (compact: no image bytes).
POOL_FIELDS = ("record_id", "split", "caption", "findings", "impression")


def source_schema(record: Record) -> str:
    """figure_caption.v1 or report_image.v1, told apart by their defining fields."""
    if "caption" in record:
        return FIGURE
    if "findings" in record or "impression" in record:
        return REPORT
    raise UnknownSourceRecord(
        f"record {record.get('record_id')!r} has neither `caption` nor `findings`/`impression`"
    )


def text(record: Record, name: str) -> str:
    value = record.get(name)
    return value.strip() if isinstance(value, str) else ""


def mentions(record: Record) -> list[str]:
    """Inline mentions as a list of strings (anything else in the field is ignored, not split)."""
    value = record.get("inline_mentions")
    if not isinstance(value, list | tuple):
        return []
    return [m for m in value if isinstance(m, str)]


def source_text(record: Record) -> str:
    """The text an LLM (and the grounding check) may rely on for this record."""
    if source_schema(record) == FIGURE:
        parts = [text(record, "figure_title"), text(record, "caption")]
        parts += [m.strip() for m in mentions(record)]
    else:
        parts = [text(record, f) for f in ("indication", "comparison", "findings", "impression")]
    return "\n".join(p for p in parts if p)


def matching_text(record: Record) -> str:
    """The text a matching task pairs with the image: caption, else impression, else findings."""
    if source_schema(record) == FIGURE:
        return text(record, "caption")
    return text(record, "impression") or text(record, "findings")


def compact(record: Record) -> dict[str, Any]:
    """What a distractor pool keeps of a record."""
    return {name: record.get(name) for name in POOL_FIELDS if name in record}


def has_image(record: Record) -> bool:
    return bool(record.get("image")) or bool(record.get("image_sha256"))


def image_fields(record: Record, include_image: bool) -> dict[str, Any]:
    """The image columns of an instruction: always the hash readers find the image by, the
    bytes only when asked to copy them."""
    data = record.get("image") or None
    digest = record.get("image_sha256")
    if data and not digest:
        digest = hashlib.sha256(data).hexdigest()
    return {
        "image": data if include_image else None,
        "image_sha256": digest,
        "image_format": record.get("image_format"),
    }


def new_instruction(
    record: Record,
    *,
    index: int,
    task: str,
    task_family: str,
    conversations: list[dict[str, str]],
    answer_type: str,
    answer: str | None,
    generator: str,
    include_image: bool,
    text_only: bool = False,
    options: list[str] | None = None,
    template_version: str | None = None,
    prompt_version: str | None = None,
    model: str | None = None,
    cache_key: str | None = None,
    flags: list[str] | None = None,
) -> dict[str, Any]:
    source_id = str(record["record_id"])
    images = (
        {"image": None, "image_sha256": None, "image_format": None}
        if text_only
        else image_fields(record, include_image)
    )
    return {
        "record_id": f"{source_id}#{task}.{index}",
        "source_record_id": source_id,
        "split": record.get("split"),
        **images,
        "task_family": task_family,
        "task": task,
        "conversations": conversations,
        "answer_type": answer_type,
        "options": list(options or []),
        "answer": answer,
        "generator": generator,
        "template_version": template_version,
        "prompt_version": prompt_version,
        "model": model,
        "cache_key": cache_key,
        "source_schema": source_schema(record),
        "verification_flags": list(flags or []),
    }


def stable_seed(*parts: str) -> int:
    """A seed that depends only on its text parts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")
