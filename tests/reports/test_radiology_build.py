"""End-to-end build of the radiology demo spec: exact accounting, preset official splits kept,
other splits by patient, shards read back with load_shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.cli import main
from curate.shards.loader import load_shards
from curate.split import assign_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("radiology") / "out"
    assert (
        main(
            ["build", "--spec", "demo_radiology", "--out", str(out), "--running-mode", "in_memory"]
        )
        == 0
    )
    return out


def test_manifest_accounting(build_out: Path) -> None:
    m = json.loads((build_out / "manifest.json").read_text())
    assert m["status"] == "ok"
    assert all(i["holds"] for i in m["identities"]), m["identities"]
    assert m["schema"]["name"] == "report_image"
    assert m["units"] == {"discovered": 18, "skipped": 0, "read": 14, "failed": 4}
    assert m["records"] == {"candidates": 22, "kept": 18, "rejected": 2, "errors": 2}
    assert m["reject_reasons"] == {"burned_in_annotation": 1, "image_missing": 1}
    assert m["error_reasons"] == {"empty_input": 2, "missing_file": 3, "not_utf8": 1}
    assert sum(m["splits"].values()) == 18


def test_shards_read_back_with_preset_and_patient_splits(build_out: Path) -> None:
    columns = [
        "record_id",
        "dataset",
        "subject_id",
        "split",
        "sections",
        "impression",
        "image",
        "image_format",
        "labels",
    ]
    rows: list[dict] = []
    for split in ("train", "validation", "test"):
        try:
            rows.extend(load_shards(build_out, split=split, columns=columns))
        except FileNotFoundError:
            continue
    assert len(rows) == 18
    by_subject: dict[str, set[str]] = {}
    for row in rows:
        by_subject.setdefault(row["subject_id"], set()).add(row["split"])
        assert row["image"][:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
        assert row["sections"]
    # no patient spans two splits
    assert all(len(splits) == 1 for splits in by_subject.values())
    # MIMIC: the official split file wins (validate -> validation)
    assert by_subject["10000003"] == {"validation"}
    assert by_subject["10000004"] == {"test"}
    assert by_subject["10000001"] == {"train"}
    # IU X-ray has no official split: hashed by patient with the spec's seed and ratios
    ratios = {"train": 0.7, "validation": 0.15, "test": 0.15}
    for uid in ("1", "2", "3"):
        assert by_subject[uid] == {assign_split(uid, 0, ratios)}
