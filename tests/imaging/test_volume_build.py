"""End to end: `curate build --spec demo_volumes`, read back with load_shards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_volumes_build(tmp_path):
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "curate.cli", "build", "--spec", "demo_volumes", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    from curate.parse.volume import array_from_record
    from curate.shards.loader import load_shards

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reject_reasons"] == {"report_missing": 1}
    assert manifest["error_reasons"] == {
        "missing_slices": 1,
        "truncated_archive": 1,
        "zero_spacing": 1,
    }
    assert sum(manifest["splits"].values()) == 5
    records = []
    for split in manifest["splits"]:
        records += list(load_shards(out, split=split))
    assert sorted(r["volume_name"] for r in records) == [
        "ct_series_ok",
        "train_1_a_1",
        "train_1_a_2",
        "train_2_a_1",
        "valid_3_a_1",
    ]
    splits = {r["volume_name"]: r["split"] for r in records}
    assert splits["train_1_a_1"] == splits["train_1_a_2"]  # one patient, one split
    for record in records:
        array = array_from_record(record)
        assert array.shape == (48, 48, 32) and str(array.dtype) == "int16"
        assert record["orientation"] == "RAS"
