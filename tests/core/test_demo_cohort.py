"""The learnable demo cohort (`demo_cohort` spec): generated, built, and nearly all kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.cli import main
from curate.demo.materialise import planted
from curate.shards.loader import load_shards

pytestmark = pytest.mark.slow


def test_demo_cohort_builds_and_keeps_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    assert (
        main(["build", "--spec", "demo_cohort", "--out", str(out), "--running-mode", "in_memory"])
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    facts = planted(str(out / "_work" / "demo_input"), "pmc_cohort")
    assert manifest["status"] == "ok"
    assert manifest["identities"] and all(i["holds"] for i in manifest["identities"])
    assert manifest["units"] == {
        "discovered": facts["articles"],
        "skipped": 0,
        "read": facts["articles"],
        "failed": 0,
    }
    records = manifest["records"]
    assert records["candidates"] == facts["figures"]
    assert records["errors"] == 0 and manifest["error_reasons"] == {}
    assert records["kept"] + records["rejected"] == facts["figures"]
    assert records["kept"] >= 0.8 * facts["figures"]
    # Only copies are dropped: no licence, size or caption rule rejects a cohort figure.
    assert set(manifest["reject_reasons"]) <= {"near_duplicate_caption", "near_duplicate_image"}
    assert set(manifest["splits"]) == {"train", "validation"}
    assert sum(manifest["splits"].values()) == records["kept"]
    rows = list(load_shards(out, split="validation", columns=["caption", "image_width"]))
    assert len(rows) == manifest["splits"]["validation"]
    assert all(" lesion in the " in row["caption"] for row in rows)
    assert min(row["image_width"] for row in rows) >= 96
