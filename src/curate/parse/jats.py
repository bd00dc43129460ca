"""JATS / NLM article XML -> parsed article with figures, captions and inline mentions.

Pure and loud: `parse_jats_articles(data)` takes bytes and returns parsed articles or raises a
named `InputError`. One lxml parse per document, entity resolution, DTD loading and network
off, `huge_tree` off. Decisions (each fixes a pubmed_parser failure mode):

* graphic hrefs come from the namespaced `xlink:href` attribute, never the first attribute;
* a figure without a caption gets `caption == ""`, never the previous figure's caption;
* captions keep the text of nested markup (italic, sub/sup, xref, lists, several <p>), with a
  space between block elements (title, p, list-item) and whitespace normalised;
* graphics inside `<alternatives>` are alternatives of *one* image: they form one graphic slot
  whose first href is the primary one (the others are fallbacks for image matching);
  several graphic slots in one `<fig>` give one record each (`graphic_index`/`graphic_count`);
* figures inside `<fig-group>` carry the group id and group caption;
* inline mentions are the body sentences holding an `<xref>` whose `rid` list names the figure
  (or its fig-group), split with an abbreviation-aware splitter ("Fig. 2", "et al.", "e.g.").

Encoding policy: bytes that are not valid in the declared encoding are not repaired
(`recover=False`); an XML that declares (or defaults to) UTF-8 and is not UTF-8 raises
`NotUTF8`, so no caption is ever built from substituted characters.
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from curate.errors import EmptyInput, HostileXML, MalformedXML, NotJATS, NotUTF8
from curate.parse.licenses import License, load_license_policy, normalise_license

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"
ARTICLE_SET_ROOTS = frozenset({"pmc-articleset", "articles", "article-set"})

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
_SKIP = frozenset({"object-id", "tex-math", "graphic", "inline-graphic", "media"})
# Where a citing sentence can live (nearest ancestor wins).
_SENTENCE_HOSTS = frozenset({"p", "title", "td", "th", "list-item", "def", "disp-quote"})
# Citations inside these are not body sentences about the figure.
_NOT_BODY = frozenset({"caption", "fig", "fig-group", "ref-list", "ref", "table-wrap-foot"})

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
class ParsedFigure:
    figure_id: str | None
    label: str | None
    title: str | None
    caption: str
    fig_group_id: str | None
    fig_group_caption: str | None
    # One slot per image; a slot holds the hrefs of <alternatives> of that image (primary first).
    graphics: list[tuple[str, ...]]
    mentions: list[str] = field(default_factory=list)
    position: int = 0  # document order among the article's figures


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
# Text flattening


_SPECIAL = tuple(_BLOCK | _SKIP | {"alternatives"})
_MARK = "\ue000"  # private-use character: marks where a cited xref starts in flattened text


def _flatten_into(el: Any, out: list[str]) -> None:
    tag = el.tag
    if isinstance(tag, str):
        local = tag.rpartition("}")[2] if tag[0] == "{" else tag
        if local not in _SKIP:
            block = local in _BLOCK
            if block:
                out.append(" ")
            if next(el.iterdescendants(*_SPECIAL), None) is None:
                # Fast path: nothing below needs spacing or skipping, so libxml2 can
                # concatenate the text in C (most <p>, <title>, <label>).
                out.append(etree.tostring(el, method="text", encoding="unicode", with_tail=False))
            else:
                if el.text:
                    out.append(el.text)
                # <alternatives> repeat one content (e.g. MathML and TeX): keep the first only.
                for child in el[:1] if local == "alternatives" else el:
                    _flatten_into(child, out)
            if block:
                out.append(" ")
    if el.tail:
        out.append(el.tail)


def normalise_space(text: str) -> str:
    return " ".join(text.split())


def flatten_text(el: Any) -> str:
    """All readable text of an element (not its tail), block elements space-separated."""
    if el is None:
        return ""
    out: list[str] = []
    tail = el.tail
    el.tail = None
    try:
        _flatten_into(el, out)
    finally:
        el.tail = tail
    return normalise_space("".join(out))


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


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of sentences in `text`, abbreviation-aware."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        stop = m.start() + 1
        word_start = text.rfind(" ", start, stop)
        token = text[(word_start + 1 if word_start >= 0 else start) : stop].lstrip('(["\u201c')
        low = token.lower()
        if (
            low in _ABBREVIATIONS
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
# Figures


def _graphic_slots(container: Any, slots: list[tuple[str, ...]]) -> None:
    for child in container:
        tag = child.tag
        if not isinstance(tag, str) or tag in ("caption", "label", "fig"):
            continue
        if tag == "graphic":
            href = child.get(XLINK_HREF) or child.get("href")
            slots.append((href.strip(),) if href else ("",))
        elif tag == "alternatives":
            hrefs = tuple(
                h.strip()
                for g in child.iter("graphic")
                if (h := g.get(XLINK_HREF) or g.get("href"))
            )
            if hrefs:
                slots.append(hrefs)
        else:
            _graphic_slots(child, slots)


def _enclosing_group(fig: Any) -> Any:
    for anc in fig.iterancestors():
        tag = anc.tag
        if tag == "fig-group":
            return anc
        if tag in ("sec", "body", "back", "article", "floats-group", "sub-article", "app"):
            return None
    return None


def _figures(article: Any) -> tuple[list[ParsedFigure], dict[str, list[int]]]:
    figures: list[ParsedFigure] = []
    targets: dict[str, list[int]] = {}  # id (fig or fig-group) -> indexes of figures it names
    group_captions: dict[Any, str | None] = {}
    for position, fig in enumerate(article.iter("fig")):
        caption_el = fig.find("caption")
        title_el = caption_el.find("title") if caption_el is not None else None
        group = _enclosing_group(fig)
        group_id = group_caption = None
        if group is not None:
            group_id = group.get("id")
            if group not in group_captions:
                group_captions[group] = flatten_text(group.find("caption")) or None
            group_caption = group_captions[group]
        slots: list[tuple[str, ...]] = []
        _graphic_slots(fig, slots)
        figure = ParsedFigure(
            figure_id=fig.get("id"),
            label=flatten_text(fig.find("label")) or None,
            title=flatten_text(title_el) or None,
            caption=flatten_text(caption_el),
            fig_group_id=group_id,
            fig_group_caption=group_caption,
            graphics=slots,
            position=position,
        )
        figures.append(figure)
        if figure.figure_id:
            targets.setdefault(figure.figure_id, []).append(position)
        if group_id:
            targets.setdefault(group_id, []).append(position)
    return figures, targets


def _host(xref: Any) -> Any:
    for anc in xref.iterancestors():
        tag = anc.tag
        if tag in _NOT_BODY:
            return None
        if tag in _SENTENCE_HOSTS:
            return anc
    return None


def _attach_mentions(
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
            host = _host(xref)
            if host is not None:
                hosts.setdefault(host, []).append((xref, named))
    seen: list[set[str]] = [set() for _ in figures]
    for host, cites in hosts.items():
        originals = [xref.text for xref, _ in cites]
        for xref, _ in cites:
            xref.text = _MARK + (xref.text or "")
        out: list[str] = []
        tail = host.tail
        host.tail = None
        try:
            _flatten_into(host, out)
        finally:
            host.tail = tail
            for (xref, _), text in zip(cites, originals, strict=True):
                xref.text = text
        marked = "".join(out)
        offsets: list[int] = []
        pos = marked.find(_MARK)
        while pos >= 0:
            offsets.append(pos - len(offsets))  # offset in the text without marks
            pos = marked.find(_MARK, pos + 1)
        text = marked.replace(_MARK, "")
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


# ---------------------------------------------------------------------------------------------
# Public API

SCHEMA_REF = "figure_caption.v1"


def _empty_record() -> dict[str, Any]:
    from curate.schema import load_schema  # cached; parse stays free of Beam

    return load_schema(SCHEMA_REF).empty_record()


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
    figures, targets = _figures(article)
    _attach_mentions(article, figures, targets)
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


def article_elements(root: Any) -> list[Any]:
    tag = root.tag if isinstance(root.tag, str) else ""
    if tag == "article":
        return [root]
    if tag in ARTICLE_SET_ROOTS:
        articles = root.findall("article")
        if articles:
            return articles
    raise NotJATS(f"root element is <{tag or root.tag}>, not <article> (or an article set)")


def parse_jats_articles(data: bytes) -> list[ParsedArticle]:
    """Every article in a JATS document (`<article>` or an eFetch `<pmc-articleset>`)."""
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
) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """One figure_caption.v1 record per graphic slot (image fields None), with its hrefs.

    A figure without any graphic still yields one record (`graphic_count == 0`) so that the
    source can account for it.
    """
    owner = article.pmcid or article.doi or unit_id
    common = dict(base) if base is not None else _empty_record()
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
                caption=fig.caption,
                fig_group_id=fig.fig_group_id,
                fig_group_caption=fig.fig_group_caption,
                inline_mentions=list(fig.mentions),
                graphic_href=(hrefs[0] or None) if hrefs else None,
                graphic_index=index,
                graphic_count=len(fig.graphics),
            )
            out.append((record, tuple(h for h in hrefs if h)))
    return out
