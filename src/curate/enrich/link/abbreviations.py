"""Abbreviation definitions "long form (SF)", after Schwartz & Hearst (PSB 2003).

A pure function over the text instead of scispacy's `AbbreviationDetector`: that one needs a
spaCy pipeline per text, this one is a regex scan plus the S&H character alignment, and gives
the same pairs for the "long form (SF)" pattern that captions and reports use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PAREN = re.compile(r"\(([^()]{1,12})\)")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Abbreviation:
    short: str
    long: str
    long_start: int
    long_end: int
    short_start: int


def _is_short_form(candidate: str) -> bool:
    words = candidate.split()
    return (
        1 <= len(words) <= 2
        and 2 <= len(candidate) <= 10
        and candidate[0].isalnum()
        and any(ch.isalpha() for ch in candidate)
        and any(ch.isupper() for ch in candidate)
    )


def _best_long_form(short: str, long: str) -> int | None:
    """S&H: align the short form's characters right-to-left inside the long-form window.

    Returns the index in `long` where the long form starts, or None when it does not align.
    """
    s_index, l_index = len(short) - 1, len(long) - 1
    while s_index >= 0:
        char = short[s_index].lower()
        if not char.isalnum():
            s_index -= 1
            continue
        while l_index >= 0 and (
            long[l_index].lower() != char
            or (s_index == 0 and l_index > 0 and long[l_index - 1].isalnum())
        ):
            l_index -= 1
        if l_index < 0:
            return None
        l_index -= 1
        s_index -= 1
    start = long.rfind(" ", 0, l_index + 1) + 1
    return start


def find_abbreviations(text: str) -> list[Abbreviation]:
    found: list[Abbreviation] = []
    for match in _PAREN.finditer(text):
        short = match.group(1).strip()
        if not _is_short_form(short):
            continue
        before = text[: match.start()].rstrip()
        words = list(_WORD.finditer(before))
        window = min(len(short) + 5, len(short) * 2)
        if not words:
            continue
        first = words[max(0, len(words) - window)]
        long_text = before[first.start() :]
        start = _best_long_form(short, long_text)
        if start is None:
            continue
        long_form = long_text[start:].strip(" ,;:")
        if len(long_form) <= len(short) or long_form.lower() == short.lower():
            continue
        long_start = first.start() + start
        found.append(
            Abbreviation(
                short,
                long_form,
                long_start,
                long_start + len(long_form),
                match.start(1) + match.group(1).index(short),
            )
        )
    return found
