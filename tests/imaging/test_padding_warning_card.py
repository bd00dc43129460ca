"""A volume padded past its preset's limit is counted in the manifest's `warnings` and shown in
the data card (records carry `preprocess_warnings`; phase 1 folds their counts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.cli import main
from curate.demo.volumes import ct_phantom, write_ct_series


@pytest.mark.slow
def test_padding_above_the_limit_reaches_manifest_and_card(tmp_path: Path) -> None:
    for index, shape in enumerate([(16, 16, 8), (32, 32, 30)]):
        write_ct_series(
            tmp_path / "export" / f"series{index}", ct_phantom(shape, seed=index),
            spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
            series_uid=f"1.2.826.0.1.3680043.8.498.77{index}",
            study_uid="1.2.826.0.1.3680043.8.498.77",
        )  # fmt: skip
    spec = {
        "name": "padding",
        "schema": "volume.v2",
        "sources": [
            {
                "kind": "dicom_series",
                "path": str(tmp_path / "export"),
                # a 16x16x8 series in a 32x32x32 grid is 97% padding; 32x32x30 is 6%
                "options": {
                    "preprocess": {"target_shape": [32, 32, 32], "max_padding_fraction": 0.5}
                },
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    out = tmp_path / "out"
    args = ["build", "--spec", str(tmp_path / "spec.yaml"), "--out", str(out)]
    assert main([*args, "--running-mode", "in_memory"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"]["kept"] == 2
    assert manifest["warnings"] == {"padding_above_limit": 1}
    card = (out / "DATA_CARD.md").read_text()
    assert "padding_above_limit" in card
