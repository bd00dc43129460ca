"""JATS parsing on small inline documents: metadata, licences, figures, captions, mentions."""

from __future__ import annotations

import pytest

from curate.parse.jats import (
    figure_records,
    parse_jats,
    parse_jats_articles,
    sentence_spans,
    split_sentences,
)
from curate.schema import load_schema

NS = 'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:ali="http://www.niso.org/schemas/ali/1.0/"'


def article(
    body: str = "", meta: str = "", back: str = "", article_type: str = "research-article"
) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<article {NS} article-type="{article_type}">'
        "<front><journal-meta><journal-title-group><journal-title>J Test</journal-title>"
        f"</journal-title-group></journal-meta><article-meta>{meta}</article-meta></front>"
        f"<body>{body}</body><back>{back}</back></article>"
    ).encode()


def test_article_metadata_ids_year_type() -> None:
    meta = (
        '<article-id pub-id-type="pmid">123</article-id>'
        '<article-id pub-id-type="pmc">456</article-id>'
        '<article-id pub-id-type="doi">10.1/x</article-id>'
        "<title-group><article-title>A <italic>nice</italic> title</article-title></title-group>"
        '<pub-date pub-type="collection"><year>2019</year></pub-date>'
        '<pub-date pub-type="epub"><year>2018</year></pub-date>'
    )
    parsed = parse_jats(article(meta=meta, article_type="case-report"))
    assert (parsed.pmcid, parsed.pmid, parsed.doi) == ("PMC456", "123", "10.1/x")
    assert parsed.title == "A nice title"
    assert parsed.journal == "J Test"
    assert parsed.year == 2018  # epub wins over collection
    assert parsed.article_type == "case-report"
    assert parsed.license is None and parsed.license_family == "none"


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [("pmcid", "PMC777", "PMC777"), ("pmc-uid", "777", "PMC777"), ("pmc", "777", "PMC777")],
)
def test_pmcid_variants(kind: str, value: str, expected: str) -> None:
    parsed = parse_jats(article(meta=f'<article-id pub-id-type="{kind}">{value}</article-id>'))
    assert parsed.pmcid == expected


def test_year_from_date_type_pub_electronic() -> None:
    meta = (
        '<pub-date date-type="pub" publication-format="print"><year>2021</year></pub-date>'
        '<pub-date date-type="pub" publication-format="electronic"><year>2020</year></pub-date>'
    )
    assert parse_jats(article(meta=meta)).year == 2020


@pytest.mark.parametrize(
    ("permissions", "code", "family"),
    [
        (
            '<license xlink:href="http://creativecommons.org/licenses/by-nc-nd/3.0/"><license-p>x</license-p></license>',
            "CC BY-NC-ND 3.0",
            "noncommercial",
        ),
        (
            "<ali:license_ref>https://creativecommons.org/licenses/by/4.0/</ali:license_ref>",
            "CC BY 4.0",
            "commercial",
        ),
        (
            '<license license-type="CC BY-NC-SA"><license-p>see site</license-p></license>',
            "CC BY-NC-SA",
            "noncommercial",
        ),
        (
            "<license><license-p>Distributed under a Creative Commons Attribution-NonCommercial 4.0 "
            "International License.</license-p></license>",
            "CC BY-NC 4.0",
            "noncommercial",
        ),
        (
            '<license><license-p>Licensed as <ext-link xlink:href="http://creativecommons.org/publicdomain/zero/1.0/">'
            "CC0</ext-link>.</license-p></license>",
            "CC0 1.0",
            "commercial",
        ),
        (
            "<license><license-p>All rights reserved by the publisher.</license-p></license>",
            None,
            "other",
        ),
    ],
)
def test_license_normalisation(permissions: str, code: str | None, family: str) -> None:
    parsed = parse_jats(article(meta=f"<permissions>{permissions}</permissions>"))
    assert parsed.license == code
    assert parsed.license_family == family


FIGS = """
<sec><title>Results</title>
<p>The lesion is visible on CT (<xref ref-type="fig" rid="f1">Fig. 1</xref>). Its size was 3 cm, e.g. larger than
reported by Smith et al. in 2010. Both panels agree (<xref ref-type="fig" rid="f1 f2">Figs. 1 and 2</xref>). A third
sentence cites nothing.</p>
<p>The compound figure summarises everything (<xref ref-type="fig" rid="g1">Figure 3</xref>).</p>
<fig id="f1"><label>Figure 1</label><caption><title>CT of the liver.</title>
  <p>Axial CT showing a <italic>hypodense</italic> lesion (T<sub>2</sub> bright, <xref ref-type="bibr" rid="b1">1</xref>).</p>
  <p>Second paragraph:</p><list><list-item><p>item one</p></list-item><list-item><p>item two</p></list-item></list>
</caption><graphic id="gf1" position="anchor" xlink:href="fig1-href"/></fig>
<fig id="f2"><label>Figure 2</label><graphic xlink:href="fig2-href"/></fig>
<fig id="f5"><label>Figure 5</label><caption><p>Two images.</p></caption>
  <graphic xlink:href="f5a"/><graphic xlink:href="f5b"/></fig>
<fig id="f6"><label>Figure 6</label><caption><p>Alternatives.</p></caption>
  <alternatives><graphic xlink:href="f6.tif"/><graphic xlink:href="f6.jpg"/></alternatives></fig>
<fig-group id="g1"><caption><p>Compound <bold>figure</bold>.</p></caption>
  <fig id="f3"><label>Figure 3A</label><caption><p>Panel A.</p></caption><graphic xlink:href="f3"/></fig>
  <fig id="f4"><label>Figure 3B</label><caption><p>Panel B.</p></caption><graphic xlink:href="f4"/></fig>
</fig-group>
</sec>
"""


@pytest.fixture(scope="module")
def figs() -> dict:
    parsed = parse_jats(article(body=FIGS, meta='<article-id pub-id-type="pmc">1</article-id>'))
    return {f.figure_id: f for f in parsed.figures}


def test_caption_keeps_nested_markup_and_blocks(figs: dict) -> None:
    f1 = figs["f1"]
    assert f1.label == "Figure 1"
    assert f1.title == "CT of the liver."
    assert f1.caption == (
        "CT of the liver. Axial CT showing a hypodense lesion (T2 bright, 1). "
        "Second paragraph: item one item two"
    )


def test_captionless_figure_after_captioned_one_has_empty_caption(figs: dict) -> None:
    assert figs["f2"].caption == ""
    assert figs["f2"].title is None


def test_graphic_href_from_xlink_not_first_attribute(figs: dict) -> None:
    assert figs["f1"].graphics == [("fig1-href",)]


def test_several_graphics_and_alternatives(figs: dict) -> None:
    assert figs["f5"].graphics == [("f5a",), ("f5b",)]
    assert figs["f6"].graphics == [("f6.tif", "f6.jpg")]


def test_fig_group_id_and_caption(figs: dict) -> None:
    assert (figs["f3"].fig_group_id, figs["f3"].fig_group_caption) == ("g1", "Compound figure.")
    assert figs["f4"].fig_group_id == "g1"
    assert figs["f1"].fig_group_id is None


def test_inline_mentions_sentences(figs: dict) -> None:
    assert figs["f1"].mentions == [
        "The lesion is visible on CT (Fig. 1).",
        "Both panels agree (Figs. 1 and 2).",
    ]
    assert figs["f2"].mentions == ["Both panels agree (Figs. 1 and 2)."]
    # An xref to the fig-group id counts for each of its figures.
    assert figs["f3"].mentions == ["The compound figure summarises everything (Figure 3)."]
    assert figs["f4"].mentions == figs["f3"].mentions
    assert figs["f5"].mentions == []


def test_figure_records_one_per_graphic_slot() -> None:
    parsed = parse_jats(article(body=FIGS, meta='<article-id pub-id-type="pmc">1</article-id>'))
    records = figure_records(parsed, unit_id="u", source_uri="mem://a.xml", source_layout="folder")
    ids = [r["record_id"] for r, _ in records]
    assert ids == [
        "PMC1/f1/0",
        "PMC1/f2/0",
        "PMC1/f5/0",
        "PMC1/f5/1",
        "PMC1/f6/0",
        "PMC1/f3/0",
        "PMC1/f4/0",
    ]
    by_id = {r["record_id"]: (r, hrefs) for r, hrefs in records}
    assert by_id["PMC1/f5/1"][0]["graphic_count"] == 2
    assert by_id["PMC1/f5/1"][0]["graphic_href"] == "f5b"
    assert by_id["PMC1/f6/0"][1] == ("f6.tif", "f6.jpg")
    schema_fields = set(load_schema("figure_caption.v1").field_names)
    for record, _ in records:
        assert set(record) == schema_fields
        assert record["modality"] is None and record["entities"] is None and record["split"] is None


def test_figure_without_graphic_gives_one_zero_count_record() -> None:
    parsed = parse_jats(article(body='<fig id="x"><caption><p>Only text.</p></caption></fig>'))
    records = figure_records(parsed, unit_id="u7", source_uri="s", source_layout="folder")
    assert [(r["record_id"], r["graphic_count"], r["graphic_href"]) for r, _ in records] == [
        ("u7/x/0", 0, None)
    ]


def test_figures_in_sub_articles_and_floats_group_are_found() -> None:
    xml = article(
        body='<fig id="a"><graphic xlink:href="a"/></fig>',
        back='<floats-group><fig id="b"><graphic xlink:href="b"/></fig></floats-group>',
    )
    assert [f.figure_id for f in parse_jats(xml).figures] == ["a", "b"]


def test_article_set_gives_every_article() -> None:
    one = article(meta='<article-id pub-id-type="pmcid">PMC1</article-id>').split(b"\n", 1)[1]
    two = article(meta='<article-id pub-id-type="pmcid">PMC2</article-id>').split(b"\n", 1)[1]
    data = b"<pmc-articleset>" + one + two + b"</pmc-articleset>"
    assert [a.pmcid for a in parse_jats_articles(data)] == ["PMC1", "PMC2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("See Fig. 2 for details. Next one.", ["See Fig. 2 for details.", "Next one."]),
        ("As Smith et al. showed, it works. Yes.", ["As Smith et al. showed, it works.", "Yes."]),
        (
            "Some drugs, e.g. Aspirin, help. Others do not.",
            ["Some drugs, e.g. Aspirin, help.", "Others do not."],
        ),
        (
            "J. Smith wrote it. It was 2.5 cm wide! Was it? (Really.) Done.",
            ["J. Smith wrote it.", "It was 2.5 cm wide!", "Was it?", "(Really.)", "Done."],
        ),
        (
            "Lower case after a period. and continues.",
            ["Lower case after a period. and continues."],
        ),
    ],
)
def test_sentence_splitting(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
    assert sentence_spans("") == []
