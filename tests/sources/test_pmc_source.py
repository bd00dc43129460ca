"""PMC source over the generated demo corpus: all three layouts, exact accounting."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from curate.demo.pmc import generate_pmc_demo
from curate.errors import CurateError, MissingFile
from curate.schema import load_schema
from curate.sources.base import get_source_class
from curate.sources.pmc import PMCSource, read_file_list
from curate.stages import Failed, Rejected


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generate_pmc_demo(str(tmp_path_factory.mktemp("pmc_demo")), seed=0)


def run_layout(path: str, options: dict | None = None) -> dict[str, Any]:
    source = PMCSource(path, options)
    units = list(source.discover())
    got: dict[str, Any] = {
        "units": len(units),
        "skipped": Counter(u.skip_reason for u in units if u.skip_reason),
        "unit_errors": Counter(),
        "records": [],
        "rejected": [],
        "failed": [],
    }
    for unit in units:
        if unit.skip_reason:
            continue
        try:
            for item in source.read(unit):
                key = (
                    "rejected"
                    if isinstance(item, Rejected)
                    else "failed"
                    if isinstance(item, Failed)
                    else "records"
                )
                got[key].append(item)
        except CurateError as exc:
            got["unit_errors"][exc.reason] += 1
    got["units_list"] = units
    return got


@pytest.fixture(scope="module")
def results(demo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: run_layout(spec["path"]) for name, spec in demo["layouts"].items()}


def all_records(results: dict[str, dict[str, Any]]) -> dict[str, dict]:
    return {r["record_id"]: r for res in results.values() for r in res["records"]}


def test_registered_and_contract() -> None:
    cls = get_source_class("pmc")
    assert cls is PMCSource
    assert (cls.kind, cls.schema_ref, cls.group_field) == ("pmc", "figure_caption.v1", "pmcid")


@pytest.mark.parametrize("layout", ["cloud", "legacy", "folder"])
def test_layout_detected(demo: dict[str, Any], layout: str) -> None:
    assert PMCSource(demo["layouts"][layout]["path"]).detect_layout() == layout


@pytest.mark.parametrize("layout", ["cloud", "legacy", "folder"])
def test_accounting_matches_planted_counts(demo: dict, results: dict, layout: str) -> None:
    expected, got = demo["layouts"][layout], results[layout]
    assert got["units"] == expected["units"]
    assert dict(got["skipped"]) == expected["skipped"]
    assert dict(got["unit_errors"]) == expected["unit_errors"]
    assert len(got["records"]) == expected["records"]
    assert dict(Counter(r.reason for r in got["rejected"])) == expected["rejected"]
    assert dict(Counter(f.reason for f in got["failed"])) == expected["failed"]
    assert (
        dict(Counter(r["license_family"] for r in got["records"])) == expected["license_families"]
    )


def test_totals(demo: dict) -> None:
    assert demo["totals"]["units"] == 28
    assert demo["totals"]["records"] == 23


def test_records_conform_to_schema(results: dict) -> None:
    import pyarrow as pa

    schema = load_schema("figure_caption.v1")
    records = list(all_records(results).values())
    table = pa.Table.from_pylist(records, schema=schema.arrow)
    assert table.num_rows == 23
    for record in records:
        assert set(record) == set(schema.field_names)
        assert record["image_sha256"] == hashlib.sha256(record["image"]).hexdigest()
        assert record["modality"] is None and record["entities"] is None and record["split"] is None


def test_unit_ids_deterministic_and_unique(demo: dict, results: dict) -> None:
    again = {
        name: [u.unit_id for u in PMCSource(spec["path"]).discover()]
        for name, spec in demo["layouts"].items()
    }
    first = {name: [u.unit_id for u in res["units_list"]] for name, res in results.items()}
    assert again == first
    ids = [i for v in first.values() for i in v]
    assert len(ids) == len(set(ids))


def test_generation_is_deterministic(tmp_path: Path, demo: dict) -> None:
    other = generate_pmc_demo(str(tmp_path), seed=0)

    def digest(root: str) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*"))
            if p.is_file()
        }

    assert digest(other["root"]) == digest(demo["root"])


def test_planted_duplicates(demo: dict, results: dict) -> None:
    records = all_records(results)
    ((a, b),) = demo["exact_duplicate_images"]
    assert records[a]["image_sha256"] == records[b]["image_sha256"]
    assert records[a]["caption"] != records[b]["caption"]
    ((a, b),) = demo["exact_duplicate_pairs"]
    assert records[a]["image_sha256"] == records[b]["image_sha256"]
    assert records[a]["caption"] == records[b]["caption"]
    for src, variant in demo["near_duplicates"]:
        assert records[src]["image_sha256"] != records[variant]["image_sha256"]
        assert records[variant]["image_format"] == "JPEG"
    widths = [records[v]["image_width"] for _, v in demo["near_duplicates"]]
    source_width = records[demo["near_duplicates"][0][0]]["image_width"]
    assert widths == [source_width, source_width * 4 // 5]
    # Apart from the planted ones, every image is distinct.
    counts = Counter(r["image_sha256"] for r in records.values())
    assert sorted(c for c in counts.values() if c > 1) == [2, 2]


def test_specific_records(demo: dict, results: dict) -> None:
    records = all_records(results)
    bare = records[demo["captionless_record"]]
    assert bare["caption"] == "" and bare["figure_title"] is None
    assert bare["license"] == "CC BY-NC-ND 4.0" and bare["license_family"] == "noncommercial"
    assert records[demo["tif_and_jpg_record"]]["image_format"] == "JPEG"
    alt = records[demo["alternatives_record"]]
    assert alt["graphic_href"] == "c3-g001.tif" and alt["article_version"] == 3
    assert alt["image_uri"].endswith("PMC9000003.3/c3-g001.jpg")
    group = [records[i] for i in demo["fig_group_records"]]
    assert {r["fig_group_id"] for r in group} == {"c2-G1"}
    assert (
        group[0]["fig_group_caption"]
        == "Compound figure: CT and ultrasound of the same hepatic lesion."
    )
    assert group[1]["inline_mentions"][-1] == "Both modalities agreed (Figure 1)."
    multi = [records[i] for i in demo["multi_graphic_records"]]
    assert [(r["graphic_index"], r["graphic_count"]) for r in multi] == [(0, 2), (1, 2)]
    c6 = records["PMC9000006/c6-F1/0"]
    assert (c6["license"], c6["license_family"], c6["pmid"]) == (
        "CC BY-NC",
        "noncommercial",
        "39000006",
    )
    f1 = records["PMC9200001/f1-F1/0"]  # PMCID only in the file name
    assert f1["pmcid"] == "PMC9200001" and f1["source_layout"] == "folder"
    # "(Fig. 1)" in the first sentence is plain text, not an <xref>: only the second counts.
    assert f1["inline_mentions"] == [
        "The abnormality shown in Figure 1 was confirmed at follow-up."
    ]
    c7 = records["PMC9000007/c7-F1/0"]
    assert c7["article_type"] == "correction"
    xray = records["PMC9000001/c1-F1/0"]
    assert xray["caption"].startswith("Portable chest film. Anteroposterior portable radiograph")
    assert (xray["year"], xray["journal"], xray["doi"]) == (
        2025,
        "Demo Journal of Radiology",
        "10.5555/demo.c1",
    )


def test_legacy_unsafe_member_uris(results: dict) -> None:
    uris = sorted(f.source_uri.rsplit("!", 1)[1] for f in results["legacy"]["failed"])
    assert uris == ["/tmp/absolute.txt", "PMC9100006/../../escape.txt", "PMC9100006/l6-link.jpg"]


def test_cloud_version_pin_and_include_retracted(demo: dict) -> None:
    path = demo["layouts"]["cloud"]["path"]
    units = {
        u.meta["pmcid"] + "." + str(u.meta["version"]): u
        for u in PMCSource(
            path,
            {
                "versions": {"PMC9000003": 2},
                "include_retracted": True,
                "include_non_open_access": True,
            },
        ).discover()
    }
    assert units["PMC9000003.1"].skip_reason == "superseded_version"
    assert units["PMC9000003.2"].skip_reason is None
    assert units["PMC9000003.3"].skip_reason == "unpinned_version"
    assert units["PMC9000004.1"].skip_reason is None
    assert units["PMC9000005.1"].skip_reason is None


def test_legacy_absent_package_as_error(demo: dict) -> None:
    source = PMCSource(demo["layouts"]["legacy"]["path"], {"absent_packages": "error"})
    absent = [u for u in source.discover() if u.meta.get("accession") == "PMC9100099"]
    assert absent and absent[0].skip_reason is None
    with pytest.raises(MissingFile):
        list(source.read(absent[0]))


def test_file_list_with_and_without_header() -> None:
    rows = read_file_list(
        b"File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License\n"
        b"oa_package/ac/6a/PMC7112410.tar.gz,Lancet. 2003,PMC7112410,06-04-20 14:56,12781535,NO-CC CODE\n"
    )
    headless = read_file_list(
        b"oa_package/ac/6a/PMC7112410.tar.gz,Lancet. 2003,PMC7112410,06-04-20 14:56,12781535,NO-CC CODE\n"
    )
    assert (
        rows
        == headless
        == [
            {
                "file": "oa_package/ac/6a/PMC7112410.tar.gz",
                "citation": "Lancet. 2003",
                "accession": "PMC7112410",
                "updated": "06-04-20 14:56",
                "pmid": "12781535",
                "license": "NO-CC CODE",
            }
        ]
    )
    cloud_list = read_file_list(
        b"Key,ETag,Article Citation,AccessionID,Last Updated UTC,PMID,License,Retracted\n"
        b"oa_package/x/PMC1.tar.gz,abc,C,PMC1,2020,1,CC BY,yes\n"
    )
    assert (cloud_list[0]["accession"], cloud_list[0]["retracted"]) == ("PMC1", "yes")


def test_source_and_units_pickle(demo: dict) -> None:
    source = PMCSource(demo["layouts"]["folder"]["path"])
    unit = next(iter(source.discover()))
    list(source.read(unit))  # fills the directory cache
    clone = pickle.loads(pickle.dumps(source))
    assert [r["record_id"] for r in clone.read(unit) if isinstance(r, dict)] == [
        "PMC9200001/f1-F1/0"
    ]
    assert type(unit).from_dict(unit.as_dict()) == unit


def test_cli_demo_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from curate.demo import cli as demo_cli
    from curate.sources import pmc_cli

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    demo_cli.register(commands)
    pmc_cli.register(commands)
    args = parser.parse_args(["pmc-demo", "--out", str(tmp_path), "--seed", "0"])
    assert args.func(args) == 0
    planted = json.loads(capsys.readouterr().out)
    assert planted["totals"]["records"] == 23
    args = parser.parse_args(["pmc-inspect", str(tmp_path / "folder")])
    assert args.func(args) == 1  # the planted broken files are reported, so the exit code says so
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (
        sum(1 for r in rows if "record_id" in r and "failed" not in r and "rejected" not in r) == 5
    )
    assert sorted(r["reason"] for r in rows if "error" in r) == [
        "empty_input",
        "hostile_xml",
        "hostile_xml",
        "malformed_xml",
        "not_jats",
        "not_utf8",
    ]


def _copy_cloud(demo: dict, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "cloud"
    shutil.copytree(demo["layouts"]["cloud"]["path"], root)
    return root


def _read_pmcid(root: Path, key: str) -> list:
    source = PMCSource(str(root))
    (unit,) = [u for u in source.discover() if u.unit_id.startswith(f"pmc_cloud_{key}")]
    return list(source.read(unit))


def test_cloud_md5_mismatch_is_a_dead_letter(demo: dict, tmp_path: Path) -> None:
    root = _copy_cloud(demo, tmp_path)
    image = root / "PMC9000007.1" / "c7-g001.png"
    image.write_bytes(image.read_bytes() + b"\0")  # still a PNG, bytes changed after listing
    (out,) = _read_pmcid(root, "PMC9000007.1")
    assert isinstance(out, Failed) and out.reason == "checksum_mismatch"
    assert out.record_id == "PMC9000007/c7-F1/0"


def test_cloud_flat_metadata_and_malformed_metadata(demo: dict, tmp_path: Path) -> None:
    from curate.errors import MalformedMetadata

    root = _copy_cloud(demo, tmp_path)
    # Without the per-version JSON, the flat metadata/ copy is used (C1 v2 has one).
    (root / "PMC9000001.2" / "PMC9000001.2.json").unlink()
    (unit,) = [
        u for u in PMCSource(str(root)).discover() if u.unit_id.startswith("pmc_cloud_PMC9000001.2")
    ]
    assert unit.meta["metadata_uri"] == str(root / "metadata" / "PMC9000001.2.json")
    assert [r["record_id"] for r in _read_pmcid(root, "PMC9000001.2")] == [
        "PMC9000001/c1-F1/0",
        "PMC9000001/c1-F2/0",
    ]
    (root / "PMC9000007.1" / "PMC9000007.1.json").write_text("{not json")
    with pytest.raises(MalformedMetadata):
        _read_pmcid(root, "PMC9000007.1")


def _oai_wrapped(xml: bytes) -> bytes:
    """The article as a PMC OAI-PMH GetRecord response delivers it: JATS-namespaced, enveloped."""
    start = xml.index(b"<article")
    article = xml[start:].replace(
        b"<article", b'<article xmlns="https://jats.nlm.nih.gov/ns/archiving/1.3/"', 1
    )
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><GetRecord><record><header>'
        b"<identifier>oai:pubmedcentral.nih.gov:9200001</identifier></header><metadata>"
        + article
        + b"</metadata></record></GetRecord></OAI-PMH>"
    )


def test_folder_reads_an_oai_enveloped_namespaced_article(demo: dict, tmp_path: Path) -> None:
    folder = Path(demo["layouts"]["folder"]["path"])
    for name in ("plain", "oai"):
        (tmp_path / name).mkdir()
        for path in folder.iterdir():
            if path.is_file():
                data = path.read_bytes()
                if name == "oai" and path.suffix == ".nxml":
                    data = _oai_wrapped(data)
                (tmp_path / name / path.name).write_bytes(data)

    def outcomes(name: str) -> tuple[list[dict], list[tuple]]:
        got = run_layout(str(tmp_path / name))
        assert not got["unit_errors"] and not got["rejected"]
        drop = ("unit_id", "source_uri", "image_uri")
        kept = [{k: v for k, v in r.items() if k not in drop} for r in got["records"]]
        return kept, [(f.record_id, f.reason) for f in got["failed"]]

    plain = outcomes("plain")
    # The demo plants one unreadable image in this article: one record, one dead letter.
    assert len(plain[0]) == 1 and plain[0][0]["image"] and plain[0][0]["inline_mentions"]
    assert plain[1] == [("PMC9200001/f1-F2/0", "unreadable_image")]
    assert outcomes("oai") == plain
