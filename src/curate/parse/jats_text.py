"""Text of JATS elements: flattening nested markup, and an abbreviation-aware sentence splitter.

Captions and sentences keep the text of nested markup (italic, sub/sup, xref, lists, several
<p>), with a space between block elements (title, p, list-item) and whitespace normalised.
Tags may carry a namespace (MathML inside a caption): only the local name decides.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from lxml import etree

# Elements whose text is a separate block: a space goes around them when flattening.
_BLOCK = frozenset(
    {
        "p",
        "title",
        "label",
        "list",
        "list-item",
        "def-list",
        "def-item",
        "term",
        "def",
        "disp-quote",
        "disp-formula",
        "sec",
        "caption",
        "table",
        "tr",
        "td",
        "th",
        "break",
        "statement",
        "attrib",
        "fn",
    }
)
# Elements that carry no readable text for a caption or sentence.
SKIP = frozenset({"object-id", "tex-math", "graphic", "inline-graphic", "media"})

_SPECIAL = tuple(_BLOCK | SKIP | {"alternatives"})
MARK = "\ue000"  # private-use character: marks where a cited xref starts in flattened text


def flatten_into(
    el: Any,
    out: list[str],
    skip: frozenset[str] = SKIP,
    special: tuple[str, ...] = _SPECIAL,
) -> None:
    """Append the text of `el` and its tail; elements named in `skip` lose their own text
    (never their tail); `special` must name every element of `_BLOCK`, `skip` and
    `alternatives` so that the fast path is only taken where it gives the same text."""
    tag = el.tag
    if isinstance(tag, str):
        local = tag.rpartition("}")[2] if tag[0] == "{" else tag
        if local not in skip:
            block = local in _BLOCK
            if block:
                out.append(" ")
            if next(el.iterdescendants(*special), None) is None:
                # Fast path: nothing below needs spacing or skipping, so libxml2 can
                # concatenate the text in C (most <p>, <title>, <label>).
                out.append(etree.tostring(el, method="text", encoding="unicode", with_tail=False))
            else:
                if el.text:
                    out.append(el.text)
                # <alternatives> repeat one content (e.g. MathML and TeX): keep the first only.
                for child in el[:1] if local == "alternatives" else el:
                    flatten_into(child, out, skip, special)
            if block:
                out.append(" ")
    if el.tail:
        out.append(el.tail)


def normalise_space(text: str) -> str:
    return " ".join(text.split())


@cache
def special_tags(skip: frozenset[str]) -> tuple[str, ...]:
    return tuple(_BLOCK | skip | {"alternatives"})


def flatten_raw(el: Any, skip: frozenset[str] = SKIP) -> str:
    """The text of an element (not its tail) before whitespace normalisation."""
    special = _SPECIAL if skip is SKIP else special_tags(skip)
    out: list[str] = []
    tail = el.tail
    el.tail = None
    try:
        flatten_into(el, out, skip, special)
    finally:
        el.tail = tail
    return "".join(out)


def flatten_text(el: Any, skip: frozenset[str] = SKIP) -> str:
    """All readable text of an element (not its tail), block elements space-separated."""
    if el is None:
        return ""
    return normalise_space(flatten_raw(el, skip))


# ---------------------------------------------------------------------------------------------
# Sentences

_ABBREVIATIONS = frozenset(
    {
        "fig.",
        "figs.",
        "al.",
        "e.g.",
        "i.e.",
        "cf.",
        "vs.",
        "approx.",
        "ca.",
        "eq.",
        "eqs.",
        "ref.",
        "refs.",
        "no.",
        "nos.",
        "dr.",
        "mr.",
        "mrs.",
        "ms.",
        "prof.",
        "st.",
        "suppl.",
        "tab.",
        "resp.",
        "sp.",
        "spp.",
        "var.",
        "inc.",
        "ltd.",
        "co.",
        "vol.",
        "pp.",
        "p.",
        "ed.",
        "eds.",
        "sect.",
        "sec.",
        "ch.",
        "viz.",
        "etc.)",
        "a.k.a.",
        "incl.",
        "max.",
        "min.",
        "dept.",
        "univ.",
        "jr.",
        "sr.",
        "subsp.",
        "ssp.",
        "cv.",
        "n.s.",
        "s.d.",
        "i.v.",
        "i.p.",
        "s.c.",
        "p.o.",
        "b.i.d.",
        "t.i.d.",
    }
)
# A candidate boundary: terminal punctuation, optional closers, whitespace, then a capital,
# digit or opening bracket/quote.
_BOUNDARY = re.compile(r"[.!?][)\]\"'\u201d\u2019]*\s+(?=[(\[\"\u201c\u2018]?[A-Z0-9])")
_INITIAL = re.compile(r"^\(?[A-Z]\.$")
_LETTERS_AT_END = re.compile(r"(?<![a-z0-9.])[a-z.]+$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of sentences in `text`, abbreviation-aware."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        stop = m.start() + 1
        word_start = stop - 1
        while word_start > start and not text[word_start - 1].isspace():  # any whitespace
            word_start -= 1
        token = text[word_start:stop].lstrip('(["\u201c')
        low = token.lower()
        # In "A/Fig." (or an arrow before "Fig.") the abbreviation is the letters at the end.
        word = _LETTERS_AT_END.search(low)
        if (
            low in _ABBREVIATIONS
            or (word is not None and word.group() in _ABBREVIATIONS)
            or _INITIAL.match(token)
            or low.endswith("e.g.")
            or low.endswith("i.e.")
        ):
            continue
        spans.append((start, m.end()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def split_sentences(text: str) -> list[str]:
    return [s for a, b in sentence_spans(text) if (s := normalise_space(text[a:b]))]
