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


# ---------------------------------------------------------------- training batches


def training_ids(out, batch_size=12, **kwargs) -> list[list[str]]:
    from curate.shards.training import load_training_batches

    rows = load_training_batches(out, batch_size, columns=["record_id"], **kwargs)
    return [[row["record_id"] for row in batch] for batch in rows]


def test_two_spellings_of_one_path_give_one_order(out_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(out_dir.parent)
    relative = Path(out_dir.name)
    assert training_ids(relative, seed=3) == training_ids(out_dir.resolve(), seed=3)
    assert ids(load_shards(relative, shuffle=True, seed=3)) == ids(
        load_shards(out_dir.resolve(), shuffle=True, seed=3)
    )
    assert ids(load_shards(f"./{out_dir.name}/", shuffle=True, seed=3)) == ids(
        load_shards(out_dir, shuffle=True, seed=3)
    )


def test_training_batches_give_every_rank_equal_rows_and_drop_only_the_tail(out_dir: Path):
    # 120 rows, global batch 18: 6 batches (108 rows), 12 rows left over this epoch.
    whole = training_ids(out_dir, batch_size=18, seed=1)
    assert len(whole) == 6 and all(len(b) == 18 for b in whole)
    flat = [r for b in whole for r in b]
    assert len(set(flat)) == 108
    ranks = [training_ids(out_dir, batch_size=18, seed=1, rank=r, world_size=3) for r in range(3)]
    assert [len(r) for r in ranks] == [6, 6, 6]
    for index, batch in enumerate(whole):
        shares = [ranks[r][index] for r in range(3)]
        assert [len(s) for s in shares] == [6, 6, 6]
        # The ranks' shares of global batch i are exactly the one-process batch i.
        assert sorted(r for s in shares for r in s) == sorted(batch)


def test_shuffle_buffer_mixes_row_groups_and_files(out_dir: Path):
    # Row groups hold 10 consecutive ids; a 40-row window spans four random row groups.
    batches = training_ids(out_dir, batch_size=10, seed=2, buffer_rows=40)
    groups = [{int(r[3:8]) // 10 for r in batch} for batch in batches]
    assert sum(len(g) for g in groups) / len(groups) > 2
    unshuffled_window = training_ids(out_dir, batch_size=10, seed=2, buffer_rows=1)
    assert all(len({int(r[3:8]) // 10 for r in b}) == 1 for b in unshuffled_window)


def test_epochs_reorder_deterministically(out_dir: Path):
    from curate.shards.training import load_training_batches

    rows = load_training_batches(out_dir, 12, columns=["record_id"], seed=4)
    first = [r["record_id"] for b in rows for r in b]
    rows.set_epoch(1)
    second = [r["record_id"] for b in rows for r in b]
    assert first != second and sorted(first) == sorted(second)
    again = load_training_batches(out_dir, 12, columns=["record_id"], seed=4)
    again.set_epoch(1)
    assert [r["record_id"] for b in again for r in b] == second


def test_resume_skips_by_index_without_reading_what_it_skips(out_dir: Path, monkeypatch):
    from curate.shards import training

    full = training_ids(out_dir, batch_size=10, seed=5, buffer_rows=20)
    reads: list[int] = []
    original = training._PieceReader.rows

    def counting_rows(self, piece, index, rows):
        if index not in self.tables:
            reads.append(index)
        return original(self, piece, index, rows)

    monkeypatch.setattr(training._PieceReader, "rows", counting_rows)
    rows = training.load_training_batches(
        out_dir, 10, columns=["record_id"], seed=5, buffer_rows=20
    )
    rows.set_epoch(0, start_batch=8)
    tail = [[r["record_id"] for r in b] for b in rows]
    assert tail == full[8:]
    assert len(reads) <= 6  # the last two windows' row groups, not the 12 of the epoch


def test_training_batches_keep_their_order_with_dataloader_workers(out_dir: Path):
    from curate.shards.training import load_training_batches

    rows = load_training_batches(out_dir, 12, columns=["record_id"], seed=6, buffer_rows=30)
    alone = [[r["record_id"] for r in b] for b in rows]
    loader = DataLoader(rows, batch_size=None, num_workers=2)
    assert [[r["record_id"] for r in b] for b in loader] == alone
    rows.set_epoch(0, start_batch=3)
    assert [
        [r["record_id"] for r in b] for b in DataLoader(rows, batch_size=None, num_workers=2)
    ] == alone[3:]


def test_training_batches_carry_a_fixed_seed_per_sample(out_dir: Path):
    from curate.shards.training import SAMPLE_SEED, load_training_batches

    rows = load_training_batches(out_dir, 12, columns=["record_id"], seed=6)
    seeds = {r["record_id"]: r[SAMPLE_SEED] for b in rows for r in b}
    rows.set_epoch(0, start_batch=5)
    assert all(seeds[r["record_id"]] == r[SAMPLE_SEED] for b in rows for r in b)
    assert len(set(seeds.values())) == len(seeds)
