"""Inline mentions: the body sentences that cite a figure through `<xref ref-type="fig">`.

Policy: a mention is a sentence of running body text (a paragraph, list item, definition or
quote inside `<body>`, including a sub-article's body) holding an xref whose `rid` list names
the figure or its fig-group. A citation is not a mention when any ancestor between it and
`<body>` is a caption, figure, table, reference or title:

* captions of other figures and tables ("as in Figure 2") describe *their* image;
* table cells and table footnotes are not sentences;
* section titles are not counted: a heading is a label for the text below it, usually a
  fragment ("Structure of X (Figure 3)") whose words repeat the figure's own title, and the
  paragraphs under it that cite the figure are kept anyway.

The citing sentence is cut from its host's text with floats left out (a `<fig>` or
`<table-wrap>` placed inside a `<p>`, as PMC often does, would otherwise glue its caption to
the sentence), with an abbreviation-aware splitter ("Fig. 2", "et al.", "e.g.").
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from curate.parse.jats_text import MARK, SKIP, flatten_into, normalise_space, sentence_spans
from curate.parse.jats_text import special_tags as _special_tags

if TYPE_CHECKING:
    from curate.parse.jats_figures import ParsedFigure

# Where a citing sentence can live (nearest ancestor wins).
SENTENCE_HOSTS = frozenset({"p", "list-item", "def", "disp-quote"})
# A citation with one of these between it and <body> is not a body sentence about the figure.
NOT_BODY = frozenset(
    {
        "caption",
        "fig",
        "fig-group",
        "table-wrap",
        "table-wrap-group",
        "table-wrap-foot",
        "table",
        "ref-list",
        "ref",
        "title",
        "label",
        "supplementary-material",
    }
)
# Floats whose text is not part of the host paragraph's sentences.
_FLOATS = frozenset(
    {
        "fig",
        "fig-group",
        "table-wrap",
        "table-wrap-group",
        "boxed-text",
        "supplementary-material",
    }
)
_HOST_SKIP = SKIP | _FLOATS
_HOST_SPECIAL = _special_tags(_HOST_SKIP)


def sentence_host(xref: Any) -> Any:
    """The nearest sentence host of a citation in body text, or None (see module doc)."""
    host = None
    for anc in xref.iterancestors():
        tag = anc.tag
        if tag in NOT_BODY:
            return None
        if tag == "body":
            return host
        if host is None:
            if tag in SENTENCE_HOSTS:
                host = anc
            elif tag in _FLOATS:  # e.g. loose text of a <boxed-text>: no sentence around it
                return None
    return host


def attach_mentions(
    article: Any, figures: list[ParsedFigure], targets: dict[str, list[int]]
) -> None:
    if not targets:
        return
    hosts: dict[Any, list[tuple[Any, list[int]]]] = {}
    for body in article.iter("body"):
        for xref in body.iter("xref"):
            kind = xref.get("ref-type")
            if kind and kind != "fig":  # bibr, table, sec, ...: cheap early exit
                continue
            rid = xref.get("rid")
            if not rid:
                continue
            named = [i for r in rid.split() for i in targets.get(r, ())]
            if not named:
                continue
            host = sentence_host(xref)
            if host is not None:
                hosts.setdefault(host, []).append((xref, named))
    seen: list[set[str]] = [set() for _ in figures]
    for host, cites in hosts.items():
        text, offsets = _marked_text(host, [xref for xref, _ in cites])
        spans = sentence_spans(text)
        if not spans or len(offsets) != len(cites):
            continue
        starts = [a for a, _ in spans]
        for (_, named), offset in zip(cites, offsets, strict=True):
            a, b = spans[max(0, bisect.bisect_right(starts, offset) - 1)]
            sentence = normalise_space(text[a:b])
            if not sentence:
                continue
            for index in dict.fromkeys(named):
                if sentence not in seen[index]:
                    seen[index].add(sentence)
                    figures[index].mentions.append(sentence)


def _marked_text(host: Any, xrefs: list[Any]) -> tuple[str, list[int]]:
    """The host's text without floats, and where each citing xref starts in it."""
    originals = [xref.text for xref in xrefs]
    for xref in xrefs:
        xref.text = MARK + (xref.text or "")
    out: list[str] = []
    tail = host.tail
    host.tail = None
    try:
        flatten_into(host, out, _HOST_SKIP, _HOST_SPECIAL)
    finally:
        host.tail = tail
        for xref, text in zip(xrefs, originals, strict=True):
            xref.text = text
    marked = "".join(out)
    offsets: list[int] = []
    pos = marked.find(MARK)
    while pos >= 0:
        offsets.append(pos - len(offsets))  # offset in the text without marks
        pos = marked.find(MARK, pos + 1)
    return marked.replace(MARK, ""), offsets
