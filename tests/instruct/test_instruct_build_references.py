"""A real build of an instruct spec (demo_radiology): instruction rows name their image by
image_sha256 only, and both readers (the LLaVA export and `load_shards(attach_images=True)`)
get back exactly the record shards' bytes, for every split."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.instruct.export import export_llava
from curate.shards.images import record_shard_files
from curate.shards.loader import load_shards

pytestmark = pytest.mark.slow

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def build_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("radiology") / "out"
    args = ["build", "--spec", "demo_radiology", "--out", str(out), "--running-mode", "in_memory"]
    assert main(args) == 0
    return out


def instructions(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / "instructions" / split).to_pylist()


def record_images(out: Path, split: str) -> dict[str, bytes]:
    """image_sha256 -> bytes in the split's record shards."""
    table = pq.read_table(record_shard_files(out, split), columns=["image_sha256", "image"])
    return {r["image_sha256"]: r["image"] for r in table.to_pylist() if r["image_sha256"]}


def row_groups_holding(out: Path, split: str, digests: set[str]) -> int:
    count = 0
    for path in record_shard_files(out, split):
        parquet = pq.ParquetFile(path)
        for group in range(parquet.metadata.num_row_groups):
            hashes = parquet.read_row_group(group, columns=["image_sha256"]).column(0)
            count += bool(digests & set(hashes.to_pylist()))
    return count


def test_instruction_rows_carry_the_hash_not_the_bytes(build_out: Path) -> None:
    manifest = json.loads((build_out / "manifest.json").read_text())
    assert sum(manifest["instruction_splits"].values()) == 138
    for split in SPLITS:
        rows = instructions(build_out, split)
        assert len(rows) == manifest["instruction_splits"][split]
        assert all(r["image"] is None for r in rows)
        referenced = {r["image_sha256"] for r in rows if r["image_sha256"]}
        assert referenced and referenced <= set(record_images(build_out, split))


@pytest.mark.parametrize("split", SPLITS)
def test_llava_export_resolves_each_split_from_its_record_shards(
    build_out: Path, tmp_path: Path, split: str
) -> None:
    rows = instructions(build_out, split)
    referenced = {r["image_sha256"] for r in rows if r["image_sha256"]}
    images = record_images(build_out, split)
    summary = export_llava(str(build_out), split, str(tmp_path))
    assert (summary.samples, summary.images_written) == (len(rows), len(referenced))
    assert summary.text_only == sum(not r["image_sha256"] for r in rows)
    assert summary.shard_row_groups_read == row_groups_holding(build_out, split, referenced)
    written = {p.stem: p.read_bytes() for p in (tmp_path / "images").iterdir()}
    assert written == {digest: images[digest] for digest in referenced}


@pytest.mark.parametrize("split", SPLITS)
def test_load_shards_attaches_each_instructions_image(build_out: Path, split: str) -> None:
    images = record_images(build_out, split)
    rows = list(
        load_shards(
            build_out,
            split=split,
            table="instructions",
            columns=["record_id", "image_sha256", "image"],
            attach_images=True,
        )
    )
    assert len(rows) == len(instructions(build_out, split))
    for row in rows:
        expected = images[row["image_sha256"]] if row["image_sha256"] else None
        assert row["image"] == expected, row["record_id"]
