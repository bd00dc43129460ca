"""JATS / NLM article XML -> parsed article with figures, captions and inline mentions.

Pure and loud: `parse_jats_articles(data)` takes bytes and returns parsed articles or raises a
named `InputError`. One lxml parse per document, entity resolution, DTD loading and network
off, `huge_tree` off; a DOCTYPE declaring entities is refused before lxml sees it.
Decisions (each fixes a pubmed_parser failure mode):

* any wrapper and namespace: a bare `<article>`, article sets, OAI-PMH `GetRecord` /
  `ListRecords` responses, JATS/NLM-namespaced articles (`jats_root`);
* graphic hrefs come from the namespaced `xlink:href` attribute, never the first attribute;
* a training caption and the full caption, a figure without a caption gets `""`, never the
  previous figure's caption; graphics inside `<alternatives>` form one slot; figures inside
  `<fig-group>` carry the group id and caption (`jats_figures`);
* captions keep the text of nested markup, block elements space-separated (`jats_text`);
* inline mentions are body sentences only, never captions, tables or titles
  (`jats_mentions`).

Encoding policy: bytes that are not valid in the declared encoding are not repaired
(`recover=False`); an XML that declares (or defaults to) UTF-8 and is not UTF-8 raises
`NotUTF8`, so no caption is ever built from substituted characters.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from lxml import etree

from curate.errors import EmptyInput, HostileXML, MalformedXML, NotJATS, NotUTF8
from curate.parse.jats_figures import XLINK_HREF, ParsedFigure, parse_figures
from curate.parse.jats_mentions import attach_mentions
from curate.parse.jats_root import ARTICLE_SET_ROOTS, OAI_PMH, article_elements
from curate.parse.jats_text import (
    flatten_text,
    normalise_space,
    sentence_spans,
    split_sentences,
)
from curate.parse.licenses import License, load_license_policy, normalise_license

__all__ = [
    "ARTICLE_SET_ROOTS",
    "OAI_PMH",
    "XLINK_HREF",
    "ParsedArticle",
    "ParsedFigure",
    "apply_metadata_fallbacks",
    "article_elements",
    "figure_records",
    "flatten_text",
    "normalise_space",
    "parse_jats",
    "parse_jats_articles",
    "parse_xml",
    "sentence_spans",
    "split_sentences",
]

ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"

_PUB_DATE_PRIORITY = ("epub", "ppub", "collection")

_local = threading.local()


def _parser() -> etree.XMLParser:
    # XMLParser objects must not be shared between threads; one per thread, reused.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            recover=False,
            remove_blank_text=False,
        )
        _local.parser = parser
    return parser


@dataclass
class ParsedArticle:
    pmcid: str | None
    pmid: str | None
    doi: str | None
    title: str | None
    journal: str | None
    year: int | None
    article_type: str | None
    license: str | None
    license_family: str
    license_url: str | None
    license_stated: bool
    figures: list[ParsedFigure]


# ---------------------------------------------------------------------------------------------
# Bytes -> root element, with named errors


_ELEMENT_START = re.compile(rb"<[A-Za-z_]")


def _check_prolog(data: bytes) -> None:
    """Reject internal-subset entity declarations (XXE, billion laughs) before lxml sees them.

    The internal DTD subset sits between `<!DOCTYPE` and the root element's start tag, so any
    `<!ENTITY` there is a declaration. A normal JATS DOCTYPE (public/system id, no subset)
    passes; the external DTD is never loaded.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = data.decode("utf-16", errors="replace").encode("utf-8")
    text, doctype, entity = data, b"<!DOCTYPE", b"<!ENTITY"
    start = text.find(doctype)
    if start < 0:
        return
    root = _ELEMENT_START.search(text, start + len(doctype))
    end = root.start() if root else len(text)
    if text.find(entity, start, end) >= 0:
        raise HostileXML("DOCTYPE declares entities (external entity or entity expansion)")


def _declared_encoding(data: bytes) -> str:
    m = re.match(rb"\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)", data[:200])
    return m.group(1).decode().lower() if m else "utf-8"


def parse_xml(data: bytes) -> etree._Element:
    """Parse bytes to the root element safely, or raise a named InputError."""
    if not data or not data.strip():
        raise EmptyInput("XML input is empty")
    _check_prolog(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        if _declared_encoding(data).replace("_", "-") in ("utf-8", "utf8"):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as uexc:
                raise NotUTF8(f"XML declares UTF-8 but byte {uexc.start} is not UTF-8") from exc
        message = str(exc)
        if "ntity" in message and ("loop" in message or "amplification" in message):
            raise HostileXML(message) from exc
        raise MalformedXML(message) from exc
    except ValueError as exc:  # e.g. lxml refusing unicode strings with declarations
        raise MalformedXML(str(exc)) from exc
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise HostileXML("DOCTYPE declares entities")
    return root


# ---------------------------------------------------------------------------------------------
# Article metadata


def _first(el: Any, paths: tuple[str, ...]) -> Any:
    for path in paths:
        found = el.find(path)
        if found is not None:
            return found
    return None


def _pmcid(value: str) -> str:
    value = value.strip()
    return value if value.upper().startswith("PMC") else f"PMC{value}"


def _article_ids(meta: Any) -> tuple[str | None, str | None, str | None]:
    pmcid = pmid = doi = None
    for aid in meta.iterfind("article-id"):
        kind = (aid.get("pub-id-type") or "").lower()
        value = (aid.text or "").strip()
        if not value:
            continue
        if kind in ("pmc", "pmcid", "pmc-uid") and pmcid is None:
            pmcid = _pmcid(value)
        elif kind == "pmid" and pmid is None:
            pmid = value
        elif kind == "doi" and doi is None:
            doi = value
    return pmcid, pmid, doi


def _year(meta: Any) -> int | None:
    by_kind: dict[str, int] = {}
    first: int | None = None
    for date in meta.iterfind("pub-date"):
        year_el = date.find("year")
        if year_el is None or not (year_el.text or "").strip().isdigit():
            continue
        year = int(year_el.text.strip())
        kind = date.get("pub-type") or date.get("date-type") or ""
        fmt = date.get("publication-format")
        if kind == "pub" and fmt == "electronic":
            kind = "epub"
        elif kind == "pub" and fmt == "print":
            kind = "ppub"
        by_kind.setdefault(kind, year)
        if first is None:
            first = year
    for kind in _PUB_DATE_PRIORITY:
        if kind in by_kind:
            return by_kind[kind]
    return first


def _license(meta: Any) -> tuple[License | None, bool, str | None]:
    hrefs: list[str] = []
    types: list[str] = []
    texts: list[str] = []
    stated = False
    for lic in meta.iter("license"):
        stated = True
        if href := lic.get(XLINK_HREF):
            hrefs.append(href.strip())
        if kind := lic.get("license-type"):
            types.append(kind)
        for link in lic.iter("ext-link", "uri"):
            if href := (link.get(XLINK_HREF) or link.text):
                hrefs.append(href.strip())
        texts.append(flatten_text(lic))
    for ref in meta.iter(ALI_LICENSE_REF):
        stated = True
        if ref.text:
            hrefs.insert(0, ref.text.strip())
    found = normalise_license(hrefs=hrefs, license_types=types, text=" ".join(texts))
    url = (found.url if found else None) or (hrefs[0] if hrefs else None)
    return found, stated, url


# ---------------------------------------------------------------------------------------------
# Public API

SCHEMA_REF = "figure_caption.v1"
# figure_caption.v1's `caption` is the full caption (its released meaning); from v2 on,
# `caption` is the training caption and `caption_full` the full one.
_FULL_CAPTION_ONLY = frozenset({"figure_caption.v1"})


def _empty_record(schema_ref: str) -> dict[str, Any]:
    from curate.schema import load_schema  # cached; parse stays free of Beam

    return load_schema(schema_ref).empty_record()


def _parse_article(article: Any) -> ParsedArticle:
    meta = _first(article, ("front/article-meta",))
    if meta is None:
        meta = article.makeelement("article-meta")  # empty: every field None
    journal_meta = article.find("front/journal-meta")
    pmcid, pmid, doi = _article_ids(meta)
    journal = None
    if journal_meta is not None:
        journal_el = _first(
            journal_meta,
            (
                "journal-title-group/journal-title",
                "journal-title",
                "journal-id[@journal-id-type='nlm-ta']",
            ),
        )
        journal = flatten_text(journal_el) or None
    lic, stated, url = _license(meta)
    policy = load_license_policy()
    figures, targets = parse_figures(article)
    attach_mentions(article, figures, targets)
    return ParsedArticle(
        pmcid=pmcid,
        pmid=pmid,
        doi=doi,
        title=flatten_text(meta.find("title-group/article-title")) or None,
        journal=journal,
        year=_year(meta),
        article_type=article.get("article-type"),
        license=lic.code if lic else None,
        license_family=policy.family(lic, stated=stated),
        license_url=url,
        license_stated=stated,
        figures=figures,
    )


def parse_jats_articles(data: bytes) -> list[ParsedArticle]:
    """Every article in a JATS document: an `<article>` (any JATS/NLM namespace), an article
    set (`<pmc-articleset>`, `<articles>`) or an OAI-PMH GetRecord/ListRecords response."""
    return [_parse_article(a) for a in article_elements(parse_xml(data))]


def parse_jats(data: bytes) -> ParsedArticle:
    """The single article of a JATS document."""
    articles = parse_jats_articles(data)
    if len(articles) != 1:
        raise NotJATS(f"expected one <article>, found an article set of {len(articles)}")
    return articles[0]


def apply_metadata_fallbacks(
    article: ParsedArticle,
    *,
    pmcid: str | None = None,
    pmid: str | None = None,
    doi: str | None = None,
    license_code: str | None = None,
) -> ParsedArticle:
    """Fill ids and licence from source metadata where the JATS lacks them (XML wins)."""
    article.pmcid = article.pmcid or (_pmcid(pmcid) if pmcid else None)
    article.pmid = article.pmid or pmid
    article.doi = article.doi or doi
    if article.license is None and license_code:
        lic = normalise_license(code=license_code)
        policy = load_license_policy()
        if lic is not None:
            article.license = lic.code
            article.license_family = policy.family(lic, stated=True)
        elif not article.license_stated:
            article.license_family = policy.family(None, stated=True)
        article.license_stated = True
    return article


def figure_records(
    article: ParsedArticle,
    *,
    unit_id: str,
    source_uri: str,
    source_layout: str,
    article_version: int | None = None,
    base: dict[str, Any] | None = None,
    schema_ref: str = SCHEMA_REF,
) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """One `schema_ref` record per graphic slot (image fields None), with its hrefs.

    A figure without any graphic still yields one record (`graphic_count == 0`) so that the
    source can account for it. figure_caption.v1 records carry the full caption as `caption`;
    later versions carry the training caption as `caption`, plus `caption_full` and
    `figure_doi`.
    """
    owner = article.pmcid or article.doi or unit_id
    common = dict(base) if base is not None else _empty_record(schema_ref)
    full_only = schema_ref in _FULL_CAPTION_ONLY
    common.update(
        unit_id=unit_id,
        source_uri=source_uri,
        source_layout=source_layout,
        pmcid=article.pmcid,
        article_version=article_version,
        pmid=article.pmid,
        doi=article.doi,
        title=article.title,
        journal=article.journal,
        year=article.year,
        article_type=article.article_type,
        license=article.license,
        license_family=article.license_family,
        license_url=article.license_url,
    )
    out: list[tuple[dict[str, Any], tuple[str, ...]]] = []
    for fig in article.figures:
        fig_key = fig.figure_id or f"fig-{fig.position}"
        slots = fig.graphics or [()]
        for index, hrefs in enumerate(slots):
            record = dict(common)
            record.update(
                record_id=f"{owner}/{fig_key}/{index}",
                figure_id=fig.figure_id,
                figure_label=fig.label,
                figure_title=fig.title,
                caption=fig.caption_full if full_only else fig.caption,
                fig_group_id=fig.fig_group_id,
                fig_group_caption=fig.fig_group_caption,
                inline_mentions=list(fig.mentions),
                graphic_href=(hrefs[0] or None) if hrefs else None,
                graphic_index=index,
                graphic_count=len(fig.graphics),
            )
            if not full_only:
                record.update(caption_full=fig.caption_full, figure_doi=fig.doi)
            out.append((record, tuple(h for h in hrefs if h)))
    return out
