"""Built-in rules on text and metadata (image rules: `image_quality`). Parameters and their
reasons live in `curation_rules/*.yaml`."""

from __future__ import annotations

import re
from typing import Any

from curate.rules.registry import Filter, register_rule
from curate.stages import Record

_WORD = re.compile(r"\w+", re.UNICODE)


@register_rule
class LicenseAllowed(Filter):
    """Keep records whose licence family (or exact licence) is allowed."""

    name = "license_allowed.v1"
    default_reason = "license_not_allowed"

    def __init__(self, families: list[str], licenses: list[str] | None = None) -> None:
        super().__init__(families=families, licenses=licenses)
        self.families = set(families)
        self.licenses = set(licenses or [])

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        if record.get("license") in self.licenses or record.get("license_family") in self.families:
            return True
        return False, f"license_not_allowed:{record.get('license_family') or 'none'}"


@register_rule
class CaptionWords(Filter):
    """Captions must carry enough text to teach anything (DataComp: > 2 words and > 5 chars)."""

    name = "caption_words.v1"
    default_reason = "caption_too_short"

    def __init__(self, min_words: int, min_chars: int, field: str = "caption") -> None:
        super().__init__(min_words=min_words, min_chars=min_chars, field=field)
        self.min_words, self.min_chars, self.field = min_words, min_chars, field

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        text = (record.get(self.field) or "").strip()
        if not text:
            return False, "caption_empty"
        return len(_WORD.findall(text)) >= self.min_words and len(text) >= self.min_chars


@register_rule
class ArticleTypeExcluded(Filter):
    """Corrections, retraction notices, editorials and the like carry no figure–caption teaching."""

    name = "article_type_excluded.v1"
    default_reason = "article_type_excluded"

    def __init__(self, types: list[str]) -> None:
        super().__init__(types=types)
        self.types = {t.lower() for t in types}

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        kind = (record.get("article_type") or "").lower()
        if kind in self.types:
            return False, f"article_type_excluded:{kind}"
        return True


@register_rule
class FieldRequired(Filter):
    """A record needs a non-empty value in each named field (e.g. findings for report pairs)."""

    name = "field_required.v1"
    default_reason = "field_missing"

    def __init__(self, fields: list[str], any_of: bool = False) -> None:
        super().__init__(fields=fields, any_of=any_of)
        self.fields, self.any_of = fields, any_of

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        present = [f for f in self.fields if _non_empty(record.get(f))]
        if self.any_of and present:
            return True
        if not self.any_of and len(present) == len(self.fields):
            return True
        missing = [f for f in self.fields if f not in present]
        return False, f"field_missing:{'|'.join(missing)}"


def _non_empty(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | tuple | bytes):
        return len(value) > 0
    return True
