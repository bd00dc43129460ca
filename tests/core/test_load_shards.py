"""load_shards(): rank/worker division, deterministic shuffling, len, schema checks, HF view."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

from curate.errors import SchemaMismatch
from curate.schema import load_schema
from curate.shards.loader import load_shards
from curate.shards.writer import write_parquet


def make_rows(start: int, count: int) -> list[dict]:
    return [
        {
            "record_id": f"PMC{i:05d}/F1/0",
            "unit_id": "u",
            "source_uri": "s",
            "source_layout": "folder",
            "license_family": "commercial",
            "caption": f"caption {i}",
            "graphic_index": 0,
            "graphic_count": 1,
            "inline_mentions": [f"mention {i}"],
            "split": "train",
            "image": bytes([i % 256]) * 3,
        }
        for i in range(start, start + count)
    ]


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    schema = load_schema("figure_caption.v1").arrow
    for shard in range(3):
        write_parquet(
            str(tmp_path / "shards" / "train" / f"part-train-{shard:05d}-of-00003.parquet"),
            make_rows(shard * 40, 40),
            schema,
            row_group_rows=10,
        )
    return tmp_path


def ids(dataset) -> list[str]:
    return [row["record_id"] for row in dataset]


def test_reads_every_row_once_in_order(out_dir: Path) -> None:
    dataset = load_shards(out_dir, split="train", columns=["record_id", "caption", "image"])
    rows = list(dataset)
    assert len(dataset) == 120 and len(rows) == 120
    assert rows[0] == {
        "record_id": "PMC00000/F1/0",
        "caption": "caption 0",
        "image": b"\x00\x00\x00",
    }
    assert ids(dataset) == sorted(ids(dataset))


def test_ranks_partition_the_rows(out_dir: Path) -> None:
    parts = [load_shards(out_dir, world_size=3, rank=r, shuffle=True, seed=5) for r in range(3)]
    seen = [set(ids(p)) for p in parts]
    assert sum(len(s) for s in seen) == 120
    assert set.union(*seen) == set(ids(load_shards(out_dir)))
    assert [len(p) for p in parts] == [len(s) for s in seen]


def test_dataloader_workers_split_without_overlap(out_dir: Path) -> None:
    dataset = load_shards(out_dir, columns=["record_id"], shuffle=True, seed=1)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    got = [row["record_id"] for row in loader]
    assert sorted(got) == sorted(ids(load_shards(out_dir)))


def test_shuffle_is_deterministic_per_epoch(out_dir: Path) -> None:
    a = load_shards(out_dir, shuffle=True, seed=9)
    b = load_shards(out_dir, shuffle=True, seed=9)
    first = ids(a)
    assert first == ids(b)
    assert first != sorted(first)
    a.set_epoch(1)
    second = ids(a)
    assert second != first and sorted(second) == sorted(first)
    b.set_epoch(1)
    assert ids(b) == second


def test_schema_mismatch_is_detected(out_dir: Path) -> None:
    other = pa.schema([pa.field("record_id", pa.string())]).with_metadata(
        {
            b"curate.schema.name": b"figure_caption",
            b"curate.schema.version": b"1",
            b"curate.schema.hash": b"deadbeef",
        }
    )
    write_parquet(
        str(out_dir / "shards" / "train" / "part-zz.parquet"), [{"record_id": "x"}], other
    )
    with pytest.raises(SchemaMismatch, match="deadbeef"):
        load_shards(out_dir)
    with pytest.raises(SchemaMismatch):
        load_shards(out_dir, schema="figure_caption.v1")


def test_missing_split_and_columns(out_dir: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_shards(out_dir, split="test")
    with pytest.raises(KeyError, match="no_such"):
        load_shards(out_dir, columns=["no_such"])


def test_hugging_face_view(out_dir: Path) -> None:
    hf = load_shards(out_dir, columns=["record_id", "caption"]).to_hf_dataset()
    assert hf.num_rows == 120 and hf[0]["record_id"] == "PMC00000/F1/0"


def test_decode_image_gives_three_channels() -> None:
    import io

    from PIL import Image

    from curate.shards.loader import decode_image

    buffer = io.BytesIO()
    Image.new("L", (8, 4), color=128).save(buffer, format="PNG")
    tensor = decode_image(buffer.getvalue(), size=6)
    assert tensor.shape == (3, 6, 6) and torch.allclose(tensor, torch.full_like(tensor, 128 / 255))
