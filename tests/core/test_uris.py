"""Input URIs stored relative to their source's root (curate.sources.uris)."""

from __future__ import annotations

from curate.sources.uris import relative_uri, relativise_record, relativise_text


def test_uris_below_the_root_lose_it_and_others_stay() -> None:
    assert relative_uri("/data/pmc/PMC1.1/PMC1.1.xml", "/data/pmc") == "PMC1.1/PMC1.1.xml"
    assert relative_uri("/data/pmc/PMC1.1/PMC1.1.xml", "/data/pmc/") == "PMC1.1/PMC1.1.xml"
    assert relative_uri("s3://b/pmc/a/x.tar.gz!fig1.jpg", "s3://b/pmc") == "a/x.tar.gz!fig1.jpg"
    assert relative_uri("/data/pmcx/a.xml", "/data/pmc") == "/data/pmcx/a.xml"  # a sibling
    assert relative_uri("/data/reports.csv", "/data/reports.csv") == "reports.csv"
    assert relative_uri(None, "/data") is None


def test_records_nested_images_and_messages_are_relativised() -> None:
    record = {
        "source_uri": "/in/s1.txt",
        "image_uri": "/in/a.dcm",
        "images": [{"image_uri": "/in/b.dcm"}, {"image_uri": None}],
        "caption": "/in/ stays text",
    }
    assert relativise_record(record, "/in") == {
        "source_uri": "s1.txt",
        "image_uri": "a.dcm",
        "images": [{"image_uri": "b.dcm"}, {"image_uri": None}],
        "caption": "/in/ stays text",
    }
    assert relativise_text("gap after /in/ct/IM1.dcm where", "/in") == "gap after ct/IM1.dcm where"
