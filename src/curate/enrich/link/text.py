"""Tokens, sentences and the one normalisation shared by aliases and texts.

Aliases and texts go through the same `normalise_token`, so an exact dictionary look-up finds
"effusions" for the alias "effusion" and "left-sided" for "left sided" without a model. Tokens
keep their character offsets, and `breaks_before` marks punctuation between two tokens: an
alias may never span a comma or a full stop ("effusion, pneumothorax" is two mentions).

De-identification placeholders are one token each, whatever their spelling: IU X-ray's `XXXX`
and the `___` every build writes instead (MIMIC's marker) both read as the word `XXXX`, so a
build finds what the raw text gives ("heart size ___ enlarged" is "heart size XXXX enlarged").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"[A-Za-z0-9]+|_{3,}")
PLACEHOLDER = "XXXX"  # how every de-identification placeholder reads as a token
# Characters that may sit inside a multi-word alias without breaking it.
_JOINERS = frozenset(" \t-/'’")
# Sentence ends: .!? followed by space or a capital letter (IU reports drop the space:
# "apex.There are"), a blank line, or a numbered item ("1. ... 2. ...").
_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s+|(?=[A-Z]))|\n\s*\n|\n(?=\s*\d+[.)]\s)")
# Irregular plurals radiology uses; everything else falls back to the suffix rules below.
_IRREGULAR = {
    "pneumothoraces": "pneumothorax",
    "thoraces": "thorax",
    "diverticula": "diverticulum",
    "bronchi": "bronchus",
    "calculi": "calculus",
    "emboli": "embolus",
    "foci": "focus",
    "vertebrae": "vertebra",
    "metastases": "metastasis",
    "diagnoses": "diagnosis",
    "lymphomata": "lymphoma",
    "apices": "apex",
    "ectases": "ectasis",
    "bullae": "bulla",
    "sulci": "sulcus",
    "hila": "hilum",
    "pancreas": "pancreas",
    "atlas": "atlas",
    "diabetes": "diabetes",
    "herpes": "herpes",
}


@lru_cache(maxsize=65536)  # report vocabularies are small; most tokens repeat
def normalise_token(token: str) -> str:
    """Lower-case and strip a plural suffix, the same way for aliases and texts."""
    word = token.lower()
    irregular = _IRREGULAR.get(word)
    if irregular:
        return irregular
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("sses"):
        return word[:-2]
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int
    end: int
    norm: str
    breaks_before: bool


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Alphanumeric tokens with offsets; punctuation only shows up as `breaks_before`.

    The linker and every label set tokenize the same field: the last texts are remembered."""
    return list(_tokenize(text, offset))


@lru_cache(maxsize=64)
def _tokenize(text: str, offset: int) -> tuple[Token, ...]:
    tokens: list[Token] = []
    previous_end = 0
    for match in _WORD.finditer(text):
        start, end = match.span()
        gap = text[previous_end:start]
        breaks = bool(tokens) and any(ch not in _JOINERS for ch in gap)
        word = match.group()
        if word[0] == "_":
            word = PLACEHOLDER
        tokens.append(Token(word, start + offset, end + offset, normalise_token(word), breaks))
        previous_end = end
    return tuple(tokens)


def normalise_phrase(phrase: str) -> tuple[str, ...]:
    """The token key an alias is stored under (empty when it holds no word)."""
    return tuple(t.norm for t in tokenize(phrase))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; never empty for a non-blank text."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() > start and text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans
