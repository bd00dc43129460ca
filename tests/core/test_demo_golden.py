"""The demo builds' outputs equal their golden summaries (counts, reasons, identities and the
content of every output table), so a refactoring that claims "behaviour unchanged" is checked.

An intended change of outputs regenerates the golden files (see golden_outputs.py) in the same
commit and says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from golden_outputs import summarise, tables_match

from curate.cli import main

GOLDEN = Path(__file__).parent / "golden"
SPECS = ("demo", "demo_radiology", "demo_volumes", "demo_cohort")

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("spec", SPECS)
def test_demo_build_matches_its_golden_summary(spec: str, tmp_path: Path) -> None:
    out = tmp_path / spec
    assert main(["build", "--spec", spec, "--out", str(out), "--running-mode", "in_memory"]) == 0
    expected = json.loads((GOLDEN / f"{spec}.json").read_text())
    got = summarise(out)
    assert got["manifest"] == expected["manifest"]
    assert tables_match(got["tables"], expected["tables"]) == [], (
        got["tables"],
        expected["tables"],
    )


def test_summary_sees_a_changed_row(tmp_path: Path) -> None:
    # The digest is over row content: one changed caption changes it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "shards" / "train"
    folder.mkdir(parents=True)
    (tmp_path / "manifest.json").write_text("{}")
    table = pa.table({"record_id": ["a", "b"], "caption": [f"{tmp_path}/x", "two"]})
    pq.write_table(table, folder / "part-0.parquet")
    before = summarise(tmp_path)["tables"]["shards/train"]
    pq.write_table(
        table.set_column(1, "caption", [[f"{tmp_path}/x", "three"]]), folder / "part-0.parquet"
    )
    after = summarise(tmp_path)["tables"]["shards/train"]
    assert before["rows"] == after["rows"] == 2
    assert before["sha256"] != after["sha256"]


def test_summary_tolerates_float_rounding_but_not_a_changed_value(tmp_path: Path) -> None:
    # CPUs round matrix products differently in the last bits; a real change is far larger
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "attributes"
    folder.mkdir()
    vectors = np.random.default_rng(0).normal(size=(20, 64)).astype(np.float32)

    def digest(values: np.ndarray) -> dict:
        table = pa.table({"record_id": [f"r{i}" for i in range(20)], "vector": values.tolist()})
        pq.write_table(table, folder / "embeddings.parquet")
        return summarise(tmp_path)["tables"]

    (tmp_path / "manifest.json").write_text("{}")
    expected = digest(vectors)
    assert expected["attributes"]["floats"]["count"] == 20 * 64
    noisy = vectors * (1 + np.float32(1e-6) * np.sign(vectors))
    assert tables_match(digest(noisy), expected) == []
    changed = vectors.copy()
    changed[3, 5] += 0.5
    assert tables_match(digest(changed), expected) == ["attributes"]
    swapped = vectors[[1, 0, *range(2, 20)]]  # two records' vectors exchanged
    assert tables_match(digest(swapped), expected) == ["attributes"]
