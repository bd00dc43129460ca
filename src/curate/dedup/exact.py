"""Exact duplicates on compact keys: the same image bytes, or the same normalised text with the
same image. Pure functions; the Beam transform (`curate.build.phase2.ExactDuplicates`) groups
by these keys and keeps the smallest record id of each group."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Iterator

# The text a record is compared on: the first of these fields its schema has.
TEXT_FIELDS_FOR_EXACT_DEDUP = ("caption", "report_text", "findings")

Decision = tuple[str, str, str | None]  # (stage, reason, duplicate_of)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return " ".join(text.split())


def text_field(field_names: Iterable[str]) -> str | None:
    names = set(field_names)
    for name in TEXT_FIELDS_FOR_EXACT_DEDUP:
        if name in names:
            return name
    return None


def caption_image_key(text: str | None, image_sha256: str | None) -> str | None:
    """One key for (normalised text, image): records sharing it are the same pair.

    A record without text (a DICOM image with no report, an empty caption) has no pair to
    repeat: it gets no key here, and its copies are found by the image digest alone
    (`duplicate_image`), never named `duplicate_caption_image`.
    """
    if not image_sha256 or text is None:
        return None
    normal = normalise_text(text)
    if not normal:
        return None
    return hashlib.sha256(f"{normal}\x00{image_sha256}".encode()).hexdigest()


def group_drops(
    item: tuple[str, Iterable[str]], reason: str, stage: str
) -> Iterator[tuple[str, Decision]]:
    """Keep the smallest record id of each group; the others duplicate it."""
    _, ids = item
    ordered = sorted(set(ids))
    for record_id in ordered[1:]:
        yield record_id, (stage, reason, ordered[0])
