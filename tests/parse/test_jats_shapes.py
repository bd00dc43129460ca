"""Hand-written JATS shapes: namespaces, OAI-PMH envelopes, body-only mentions, caption policy."""

from __future__ import annotations

import pytest

from curate.errors import HostileXML, NotJATS
from curate.parse.jats import figure_records, parse_jats, parse_jats_articles, split_sentences
from curate.schema import load_schema

JATS13 = "https://jats.nlm.nih.gov/ns/archiving/1.3/"
OAI = "http://www.openarchives.org/OAI/2.0/"
XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
ALI = 'xmlns:ali="http://www.niso.org/schemas/ali/1.0/"'
MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"'


def article(body: str = "", namespace: str | None = None, meta: str = "", back: str = "") -> str:
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return (
        f'<article{xmlns} {XLINK} {ALI} {MML} article-type="research-article">'
        '<front><article-meta><article-id pub-id-type="pmc">42</article-id>'
        f"{meta}</article-meta></front><body>{body}</body><back>{back}</back></article>"
    )


NAMESPACED_BODY = (
    '<p>See the scan (<xref ref-type="fig" rid="f1">Figure 1</xref>).</p>'
    '<fig id="f1"><label>Figure 1</label><caption><title>Scan.</title><p>Signal '
    "<inline-formula><mml:math><mml:mi>&#946;</mml:mi></mml:math></inline-formula> high.</p>"
    '</caption><graphic xlink:href="f1.jpg"/></fig>'
)
LICENCE = (
    "<permissions><ali:license_ref>https://creativecommons.org/licenses/by/4.0/</ali:license_ref>"
    "</permissions>"
)


@pytest.mark.parametrize(
    "namespace",
    [
        JATS13,
        "http://jats.nlm.nih.gov/ns/archiving/1.0/",
        "https://dtd.nlm.nih.gov/ns/archiving/2.3/",
        "http://dtd.nlm.nih.gov/ns/publishing/3.0/",
    ],
)
def test_namespaced_article_reads_like_a_plain_one(namespace: str) -> None:
    plain = parse_jats(article(NAMESPACED_BODY, meta=LICENCE).encode())
    namespaced = parse_jats(article(NAMESPACED_BODY, namespace, meta=LICENCE).encode())
    assert namespaced == plain
    (fig,) = namespaced.figures
    assert (fig.label, fig.caption, fig.graphics) == (
        "Figure 1",
        "Scan. Signal β high.",
        [("f1.jpg",)],
    )
    assert fig.mentions == ["See the scan (Figure 1)."]
    assert (namespaced.pmcid, namespaced.license) == ("PMC42", "CC BY 4.0")


def test_article_in_a_foreign_namespace_is_not_jats() -> None:
    with pytest.raises(NotJATS, match="namespace http://docbook.org/ns/docbook"):
        parse_jats(article(NAMESPACED_BODY, "http://docbook.org/ns/docbook").encode())


def oai(inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="{OAI}">'
        f"<responseDate>2024-01-01T00:00:00Z</responseDate>{inner}</OAI-PMH>"
    ).encode()


def record(metadata: str) -> str:
    return f"<record><header><identifier>oai:x</identifier></header><metadata>{metadata}</metadata></record>"


def test_oai_get_record() -> None:
    data = oai(f"<GetRecord>{record(article(NAMESPACED_BODY, JATS13))}</GetRecord>")
    (parsed,) = parse_jats_articles(data)
    assert parsed.figures[0].graphics == [("f1.jpg",)]


def test_oai_list_records_skips_deleted_records() -> None:
    deleted = '<record><header status="deleted"><identifier>oai:gone</identifier></header></record>'
    two = [article(NAMESPACED_BODY, JATS13), article("", JATS13)]
    data = oai(
        f"<ListRecords>{record(two[0])}{deleted}{record(two[1])}"
        "<resumptionToken>t1</resumptionToken></ListRecords>"
    )
    assert [len(a.figures) for a in parse_jats_articles(data)] == [1, 0]


DUBLIN_CORE = '<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"/>'


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        (
            '<error code="idDoesNotExist">No matching identifier</error>',
            "OAI-PMH error idDoesNotExist",
        ),
        (f"<GetRecord>{record(DUBLIN_CORE)}</GetRecord>", "metadata is <dc>"),
        (
            '<ListRecords><record><header status="deleted"/></record></ListRecords>',
            "1 deleted records",
        ),
    ],
    ids=["oai_error", "dublin_core", "only_deleted"],
)
def test_oai_responses_without_articles_are_named(inner: str, message: str) -> None:
    with pytest.raises(NotJATS, match=message):
        parse_jats_articles(oai(inner))


def test_unknown_root_is_still_not_jats() -> None:
    with pytest.raises(NotJATS, match="root element is <TEI>"):
        parse_jats_articles(b'<TEI xmlns="http://www.tei-c.org/ns/1.0"><text/></TEI>')


def test_envelope_keeps_the_prolog_guard() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE OAI-PMH [<!ENTITY x "boom">]>'
        + oai(f"<GetRecord>{record(article(NAMESPACED_BODY, JATS13))}</GetRecord>").split(b"?>", 1)[
            1
        ]
    )
    with pytest.raises(HostileXML):
        parse_jats_articles(data)


# --- mentions: body text only -------------------------------------------------------------

MENTIONS = """
<sec><title>Lesions seen on CT (<xref ref-type="fig" rid="f1">Figure 1</xref>)</title>
<p>The lesion <fig id="f1"><label>Figure 1</label><caption><title>CT.</title><p>Axial CT. Compare
 with <xref ref-type="fig" rid="f2">Figure 2</xref>.</p></caption><graphic xlink:href="f1"/></fig>
is hypodense (<xref ref-type="fig" rid="f1">Fig. 1</xref>). It grew later.</p>
<list><list-item><p>Follow-up imaging (<xref ref-type="fig" rid="f2">Figure 2</xref>) was stable.</p></list-item></list>
<table-wrap id="t1"><caption><p>Sizes measured on <xref ref-type="fig" rid="f2">Figure 2</xref>.</p></caption>
<table><tr><td>see <xref ref-type="fig" rid="f2">Fig 2</xref></td></tr></table></table-wrap>
<boxed-text><p>Key point: the lesion shrank (<xref ref-type="fig" rid="f2">Figure 2</xref>).</p></boxed-text>
<fig id="f2"><label>Figure 2</label><caption><p>MRI.</p></caption><graphic xlink:href="f2"/></fig>
</sec>
"""


@pytest.fixture(scope="module")
def mentioned() -> dict:
    return {f.figure_id: f for f in parse_jats(article(MENTIONS).encode()).figures}


def test_caption_title_and_table_citations_are_not_mentions(mentioned: dict) -> None:
    assert mentioned["f2"].mentions == [
        "Follow-up imaging (Figure 2) was stable.",
        "Key point: the lesion shrank (Figure 2).",
    ]


def test_section_title_is_not_a_mention_and_floats_stay_out_of_sentences(mentioned: dict) -> None:
    # The <fig> sits inside the <p>: its caption is not glued to the citing sentence.
    assert mentioned["f1"].mentions == ["The lesion is hypodense (Fig. 1)."]


def test_sub_article_body_counts_as_body() -> None:
    xml = article(
        '<fig id="f1"><graphic xlink:href="f1"/></fig>',
        back="",
    ).replace(
        "</article>",
        '<sub-article><body><p>We re-analysed it (<xref ref-type="fig" rid="f1">Figure 1</xref>).'
        "</p></body></sub-article></article>",
    )
    assert parse_jats(xml.encode()).figures[0].mentions == ["We re-analysed it (Figure 1)."]


# --- caption policy -----------------------------------------------------------------------

ELIFE_FIG = """
<fig id="fig5"><object-id pub-id-type="doi">10.7554/eLife.14093.011</object-id>
<label>Figure 5.</label><caption><title>Permutations.</title>
<p>Values shown in red (doi: 10.1/abc is cited here as text).</p>
<p><bold>DOI:</bold> <ext-link ext-link-type="doi" xlink:href="10.7554/eLife.14093.011">http://dx.doi.org/10.7554/eLife.14093.011</ext-link></p>
<p><supplementary-material id="SD1-data"><object-id pub-id-type="doi">10.7554/eLife.14093.012</object-id>
<label>Figure 5—source data 1.</label><caption><title>Source files.</title><p>A table.</p>
<p><bold>DOI:</bold> <ext-link xlink:href="10.7554/eLife.14093.012">http://dx.doi.org/10.7554/eLife.14093.012</ext-link></p>
</caption><media xlink:href="data1.zip"/></supplementary-material></p>
</caption><graphic xlink:href="fig5"/></fig>
<fig id="bare"><graphic xlink:href="bare"/></fig>
"""


@pytest.fixture(scope="module")
def elife() -> dict:
    return {f.figure_id: f for f in parse_jats(article(ELIFE_FIG).encode()).figures}


def test_training_caption_drops_doi_paragraph_and_supplementary_material(elife: dict) -> None:
    fig = elife["fig5"]
    assert fig.caption == "Permutations. Values shown in red (doi: 10.1/abc is cited here as text)."
    assert fig.caption_full == (
        "Permutations. Values shown in red (doi: 10.1/abc is cited here as text). "
        "DOI: http://dx.doi.org/10.7554/eLife.14093.011 Figure 5—source data 1. Source files. "
        "A table. DOI: http://dx.doi.org/10.7554/eLife.14093.012"
    )
    assert fig.doi == "10.7554/eLife.14093.011"
    assert (elife["bare"].caption, elife["bare"].caption_full, elife["bare"].doi) == ("", "", None)


def test_v1_records_keep_the_full_caption_v2_records_carry_both() -> None:
    parsed = parse_jats(article(ELIFE_FIG).encode())

    def records(schema_ref: str) -> dict[str, dict]:
        out = figure_records(
            parsed, unit_id="u", source_uri="s", source_layout="folder", schema_ref=schema_ref
        )
        return {r["figure_id"]: r for r, _ in out}

    v1, v2 = records("figure_caption.v1"), records("figure_caption.v2")
    assert all(set(r) == set(load_schema("figure_caption.v1").field_names) for r in v1.values())
    assert all(set(r) == set(load_schema("figure_caption.v2").field_names) for r in v2.values())
    fig = parsed.figures[0]
    assert v1["fig5"]["caption"] == fig.caption_full
    assert (v2["fig5"]["caption"], v2["fig5"]["caption_full"], v2["fig5"]["figure_doi"]) == (
        fig.caption,
        fig.caption_full,
        "10.7554/eLife.14093.011",
    )
    assert fig.caption != fig.caption_full


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        # A host paragraph starting on a new line: the abbreviation follows a newline.
        (
            "\nFigs. 5A-5D show growth. Then it stops.",
            ["Figs. 5A-5D show growth.", "Then it stops."],
        ),
        ("It rose (Fig. 5F\u2192Fig. 5G). Next.", ["It rose (Fig. 5F\u2192Fig. 5G).", "Next."]),
        ("As drawn ([26]:fig. 2) before. Next.", ["As drawn ([26]:fig. 2) before.", "Next."]),
        # A panel letter ending a sentence is still a boundary.
        ("Shown in Figure 5A. Then it stops.", ["Shown in Figure 5A.", "Then it stops."]),
    ],
)
def test_sentence_splitter_abbreviations_after_newlines_and_symbols(
    text: str, sentences: list[str]
) -> None:
    assert split_sentences(text) == sentences
