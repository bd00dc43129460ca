"""A build over the real JATS articles in ../shared/realdata/pmc_jats: every <fig> of every
article comes out (kept, or rejected `image_missing` since the folder holds no images) and the
accounting identities hold."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lxml import etree

from curate.cli import main

pytestmark = pytest.mark.realdata


def expected_graphics(root: Path) -> Counter:
    """Independent count: per article file, one record per graphic of each <fig> (1 when none)."""
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, recover=True)
    counts: Counter = Counter()
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".xml", ".nxml"):
            continue
        tree = etree.parse(str(path), parser)
        for fig in tree.iter("fig"):
            graphics = [g for g in fig.iter("graphic") if g.getparent().tag != "inline-formula"]
            counts[path.name] += max(1, len(graphics))
    return counts


def test_every_real_figure_is_accounted_for(realdata: Path, tmp_path: Path) -> None:
    root = realdata / "pmc_jats"
    out = tmp_path / "out"
    rc = main(
        [
            "build",
            "--spec",
            "demo",
            "--out",
            str(out),
            "--running-mode",
            "in_memory",
            "--set",
            "sources=[{kind: pmc, name: real, path: '"
            + str(root)
            + "', options: {layout: folder}}]",
            "--set",
            "rules=[pmc_figures_all_licenses.v1]",
        ]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert rc == 0, manifest.get("status_message")
    assert all(i["holds"] for i in manifest["identities"])
    assert manifest["units"]["failed"] == 0
    rejects = pq.read_table(out / "rejects").to_pylist()
    by_file = Counter(Path(r["source_uri"]).name for r in rejects)
    expected = expected_graphics(root)
    assert manifest["records"]["candidates"] == sum(expected.values())
    # The folder has no image files, so each graphic is an image_missing reject (figures with no
    # graphic at all are rejected as such) and nothing is kept.
    assert manifest["records"]["kept"] == 0
    assert set(r["reason"] for r in rejects) <= {"image_missing", "figure_without_graphic"}
    # eFetch-style files hold several articles; compare per file.
    assert by_file == expected
    assert all(r["caption"] is not None for r in rejects)
    licensed = [r for r in rejects if r["license"]]
    assert licensed and all(
        r["license_family"] in {"commercial", "noncommercial", "other"} for r in licensed
    )
