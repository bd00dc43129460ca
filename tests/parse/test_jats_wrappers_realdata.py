"""Every real JATS article in ../shared/realdata, re-shaped in memory into the wrappers and
namespaces other archives deliver, parses to exactly the article the plain file gives.

Shapes: a default JATS/NLM namespace on `<article>` (text edit of the real bytes, so the
DOCTYPE and XML declaration stay), a prefixed namespace on every element (lxml re-tag), an
OAI-PMH GetRecord per article, one OAI-PMH ListRecords holding every article (plus a deleted
record), an OAI record whose article declares no namespace, and `<articles>` / eFetch
`<pmc-articleset>` wrappers. Nothing here is written to disk.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from curate.parse.jats import parse_jats_articles

pytestmark = pytest.mark.realdata

SAFE = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
OAI = "http://www.openarchives.org/OAI/2.0/"
JATS_NAMESPACES = [
    "https://jats.nlm.nih.gov/ns/archiving/1.3/",
    "http://jats.nlm.nih.gov/ns/archiving/1.0/",
    "https://dtd.nlm.nih.gov/ns/archiving/2.3/",
    "http://dtd.nlm.nih.gov/ns/archiving/3.0/",
]
ARTICLE_START = re.compile(rb"<article(?=[\s>])")


@pytest.fixture(scope="module")
def corpus(realdata: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in (realdata / "pmc_jats").rglob("*") if p.suffix in (".xml", ".nxml"))
    assert len(files) == 69
    return [(str(p.relative_to(realdata)), p.read_bytes()) for p in files]


@pytest.fixture(scope="module")
def plain(corpus: list[tuple[str, bytes]]) -> dict[str, list]:
    return {name: parse_jats_articles(data) for name, data in corpus}


def article_elements_of(data: bytes) -> list[bytes]:
    """Each <article> of a real file serialised alone (no declaration, no DOCTYPE)."""
    root = etree.fromstring(data, SAFE)
    articles = [root] if root.tag == "article" else root.findall("article")
    return [etree.tostring(a) for a in articles]


def with_default_namespace(xml: bytes, namespace: str) -> bytes:
    assert b'xmlns="' not in xml[:2000]
    out, n = ARTICLE_START.subn(b'<article xmlns="' + namespace.encode() + b'"', xml)
    assert n >= 1
    return out


def with_prefixed_namespace(data: bytes, namespace: str) -> bytes:
    root = etree.fromstring(data, SAFE)
    for el in root.iter():
        if isinstance(el.tag, str) and not el.tag.startswith("{"):
            el.tag = f"{{{namespace}}}{el.tag}"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def oai_record(article: bytes, identifier: str) -> bytes:
    return (
        b"<record><header><identifier>oai:pubmedcentral.nih.gov:"
        + identifier.encode()
        + b"</identifier>"
        b"<datestamp>2024-01-01</datestamp><setSpec>pmc-open</setSpec></header>"
        b"<metadata>" + article + b"</metadata></record>"
    )


def oai_response(verb: str, records: list[bytes]) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<OAI-PMH xmlns="' + OAI.encode() + b'" '
        b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b"<responseDate>2024-01-02T00:00:00Z</responseDate>"
        b'<request verb="' + verb.encode() + b'" metadataPrefix="pmc">'
        b"https://www.ncbi.nlm.nih.gov/pmc/oai/oai.cgi</request>"
        b"<" + verb.encode() + b">" + b"".join(records) + b"</" + verb.encode() + b">"
        b"</OAI-PMH>"
    )


def figure_count(data: bytes) -> int:
    return int(etree.fromstring(data, SAFE).xpath("count(//*[local-name()='fig'])"))


@pytest.mark.parametrize("namespace", JATS_NAMESPACES)
def test_default_namespace_gives_the_same_articles(corpus, plain, namespace: str) -> None:
    total = 0
    for name, data in corpus:
        if name.endswith("PMC6358576_PMC6358589.xml"):
            continue  # an <articles> set: its articles are covered by tidypmc/split/
        shaped = with_default_namespace(data, namespace)
        articles = parse_jats_articles(shaped)
        assert articles == plain[name], name
        figures = sum(len(a.figures) for a in articles)
        assert figures == figure_count(shaped), name
        total += figures
    assert total == 531  # 572 figures less the 41 of the set file


def test_prefixed_namespace_gives_the_same_articles(corpus, plain) -> None:
    for name, data in corpus:
        shaped = with_prefixed_namespace(data, JATS_NAMESPACES[0])
        assert b"<ns0:fig" in shaped or figure_count(shaped) == 0, name
        assert parse_jats_articles(shaped) == plain[name], name


def test_oai_get_record_per_article(corpus, plain) -> None:
    for name, data in corpus:
        elements = article_elements_of(data)
        expected = plain[name]
        for i, article in enumerate(elements):
            shaped = oai_response(
                "GetRecord", [oai_record(with_default_namespace(article, JATS_NAMESPACES[0]), name)]
            )
            assert parse_jats_articles(shaped) == [expected[i]], name


def test_oai_list_records_holds_every_article(corpus, plain) -> None:
    records = [
        oai_record(with_default_namespace(article, JATS_NAMESPACES[i % 4]), f"{name}/{i}")
        for name, data in corpus
        for i, article in enumerate(article_elements_of(data))
    ]
    deleted = b'<record><header status="deleted"><identifier>oai:x:1</identifier></header></record>'
    shaped = oai_response("ListRecords", [*records[:5], deleted, *records[5:]])
    articles = parse_jats_articles(shaped)
    assert articles == [a for name, _ in corpus for a in plain[name]]
    assert len(articles) == 78  # 68 single-article files + the 10-article set
    assert sum(len(a.figures) for a in articles) == figure_count(shaped) == 572
    assert sum(a.license is not None for a in articles) == sum(
        a.license is not None for name, _ in corpus for a in plain[name]
    )


def test_oai_article_without_its_own_namespace(corpus, plain) -> None:
    # Written without xmlns inside the envelope, the article inherits the OAI namespace.
    name, data = next((n, d) for n, d in corpus if n.endswith("pone.0046493.nxml"))
    (article,) = article_elements_of(data)
    shaped = oai_response("GetRecord", [oai_record(article, name)])
    root = etree.fromstring(shaped, SAFE)
    assert root.find(f".//{{{OAI}}}article") is not None  # really in the OAI namespace
    assert parse_jats_articles(shaped) == plain[name]


@pytest.mark.parametrize("wrapper", ["articles", "pmc-articleset", "article-set"])
def test_article_set_wrappers_with_namespaced_articles(corpus, plain, wrapper: str) -> None:
    names = [n for n, _ in corpus if "/split/" in n]
    body = b"".join(
        with_default_namespace(a, JATS_NAMESPACES[2])
        for n, d in corpus
        if n in names
        for a in article_elements_of(d)
    )
    shaped = b"<" + wrapper.encode() + b">" + body + b"</" + wrapper.encode() + b">"
    assert parse_jats_articles(shaped) == [a for n in names for a in plain[n]]
