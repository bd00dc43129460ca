"""A spec that asks for `figure_caption.v2` gets PMC records with the training caption, the full
caption and the figure DOI; v1 specs keep v1 records (curate.sources.base `also_produces`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.errors import SpecError
from curate.sources.pmc import PMCSource


def test_the_source_refuses_a_schema_it_cannot_write() -> None:
    assert PMCSource("/x", {}).record_schema == "figure_caption.v1"
    assert PMCSource("/x", {}, schema_ref="figure_caption.v2").record_schema == "figure_caption.v2"
    with pytest.raises(SpecError, match="produces"):
        PMCSource("/x", {}, schema_ref="volume.v1")


@pytest.mark.slow
def test_a_v2_build_writes_both_captions(tmp_path: Path) -> None:
    from curate.demo.pmc import generate_pmc_demo

    generate_pmc_demo(str(tmp_path / "corpus"))
    out = tmp_path / "out"
    args = ["build", "--spec", "demo_cohort", "--out", str(out), "--running-mode", "in_memory"]
    args += ["--source", f"pmc_cohort={tmp_path / 'corpus' / 'folder'}"]
    for setting in ("schema=figure_caption.v2", "dedup.near.enabled=false", "max_error_fraction=1"):
        args += ["--set", setting]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"]["version"] == 2
    table = pq.read_table(out / "shards")
    assert {"caption", "caption_full", "figure_doi"} <= set(table.column_names)
    rows = table.to_pylist()
    assert rows and all(r["caption_full"] for r in rows if r["caption"])
    # the training caption is never longer than the full caption it is cut from
    assert all(len(r["caption"]) <= len(r["caption_full"]) for r in rows)
