"""Instruction rows that reference their image by image_sha256: the index over the record
shards, lazy row-group reads, `load_shards(attach_images=True)`, and the MLLM trainer's loader
fed from them."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_data import write_synthetic_shards
from torch.utils.data import DataLoader

from curate.shards.images import ImageNotFound, ImageResolver, record_shard_files
from curate.shards.loader import load_shards
from curate.shards.training import load_training_batches
from curate.train.config import load_config
from curate.train.mllm import LMTokenizer, MLLMTransform, stage_loader
from curate.train.vision import ImagePreprocess


def write_records(path: Path, rows: list[tuple[str | None, bytes | None]], group: int) -> None:
    """A record shard holding only the columns the resolver reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "image_sha256": pa.array([digest for digest, _ in rows], pa.string()),
            "image": pa.array([data for _, data in rows], pa.large_binary()),
        }
    )
    pq.write_table(table, path, row_group_size=group)


def image(index: int) -> tuple[str, bytes]:
    data = b"img-%03d" % index
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture()
def records(tmp_path: Path) -> Path:
    """Two record shards of the train split, three row groups of two rows each."""
    folder = tmp_path / "shards" / "train"
    write_records(folder / "part-0.parquet", [image(i) for i in range(4)], group=2)
    write_records(folder / "part-1.parquet", [image(4), (None, None)], group=2)
    return tmp_path


def test_index_reads_hashes_and_fetches_bytes_by_row_group(records: Path) -> None:
    resolver = ImageResolver.for_split(records, "train")
    assert len(resolver.index) == 5  # the row without a hash is not indexed
    assert resolver.index.pieces == [(0, 0), (0, 1), (1, 0)]
    assert resolver.row_groups_read == 0  # the index read the hash column only
    for index in (0, 1, 2, 3, 4, 0, 1):
        digest, data = image(index)
        assert resolver(digest) == data
    assert resolver.row_groups_read == 3  # each row group once, then from the cache


def test_fetch_many_reads_each_row_group_once_in_shard_order(records: Path) -> None:
    resolver = ImageResolver.for_split(records, "train", cache_bytes=1)  # keeps one row group
    wanted = [image(i)[0] for i in (4, 1, 0, 3, 1)]
    fetched = list(resolver.fetch_many(wanted))
    assert fetched == [image(i) for i in (0, 1, 3, 4)]
    assert resolver.row_groups_read == 3


def test_missing_hash_is_a_named_error_before_any_read(records: Path) -> None:
    resolver = ImageResolver.for_split(records, "train")
    absent = hashlib.sha256(b"nowhere").hexdigest()
    with pytest.raises(ImageNotFound, match=f"1 image\\(s\\) .* in no shard .*{absent}"):
        list(resolver.fetch_many([image(0)[0], absent]))
    with pytest.raises(ImageNotFound) as caught:
        resolver(absent)
    assert caught.value.reason == "image_not_found"
    with pytest.raises(ImageNotFound):
        resolver("not-a-hex-digest")
    assert resolver.row_groups_read == 0


def test_hashes_sharing_a_prefix_resolve_to_their_own_image(tmp_path: Path) -> None:
    # The index sorts on the first 8 bytes; the full hash decides on fetch.
    first, second = "ab" * 8 + "0" * 48, "ab" * 8 + "1" * 48
    write_records(
        tmp_path / "shards" / "train" / "part-0.parquet", [(first, b"one"), (second, b"two")], 1
    )
    resolver = ImageResolver.for_split(tmp_path, "train")
    assert (resolver(first), resolver(second)) == (b"one", b"two")
    with pytest.raises(ImageNotFound):
        resolver("ab" * 8 + "2" * 48)


def test_resolver_pickles_without_its_cache(records: Path) -> None:
    resolver = ImageResolver.for_split(records, "train")
    resolver(image(0)[0])
    copy = pickle.loads(pickle.dumps(resolver))
    assert copy.cache.entries == {} and copy(image(4)[0]) == image(4)[1]


@pytest.fixture(scope="module")
def referenced_out(tmp_path_factory) -> Path:
    return write_synthetic_shards(
        tmp_path_factory.mktemp("referenced") / "out", train=24, validation=8, row_group_rows=8
    )


def record_images(out: Path, split: str) -> dict[str, bytes]:
    """source record id -> image bytes, as the record shards hold them."""
    rows = pq.read_table(record_shard_files(out, split), columns=["record_id", "image"])
    return {r["record_id"]: r["image"] for r in rows.to_pylist()}


def test_instruction_rows_reference_images_by_hash(referenced_out: Path) -> None:
    rows = pq.read_table(referenced_out / "instructions" / "train").to_pylist()
    figures = record_images(referenced_out, "train")
    assert len(rows) == 96 and all(r["image"] is None for r in rows)
    assert all(
        r["image_sha256"] == hashlib.sha256(figures[r["source_record_id"]]).hexdigest()
        for r in rows
    )


@pytest.mark.parametrize("split", ["train", "validation"])
def test_load_shards_attaches_the_record_shards_image(referenced_out: Path, split: str) -> None:
    figures = record_images(referenced_out, split)
    columns = ["source_record_id", "image"]
    rows = list(
        load_shards(
            referenced_out, split=split, table="instructions", columns=columns, attach_images=True
        )
    )
    assert len(rows) == 4 * len(figures)
    assert all(sorted(r) == sorted(columns) for r in rows)  # the hash read for the join is dropped
    assert all(r["image"] == figures[r["source_record_id"]] for r in rows)
    plain = load_shards(referenced_out, split=split, table="instructions", columns=columns)
    assert all(r["image"] is None for r in plain)


def test_attached_images_reach_dataloader_workers(referenced_out: Path) -> None:
    figures = record_images(referenced_out, "train")
    dataset = load_shards(
        referenced_out,
        split="train",
        table="instructions",
        columns=["source_record_id", "image"],
        attach_images=True,
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=1)
    rows = list(loader)
    assert len(rows) == 96 and all(r["image"] == figures[r["source_record_id"]] for r in rows)


def chat_loader(out: Path, batch_size: int):
    config = load_config("mllm_tiny")
    config.train.batch_size = batch_size
    tokenizer = LMTokenizer.train(["a chat about an image .", "USER: ASSISTANT:"] * 3, 100)
    preprocess = ImagePreprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    dataset, loader = stage_loader(config, config.stages[1], out, tokenizer, preprocess)
    return config, dataset, loader, preprocess


def test_mllm_chat_stage_loader_yields_each_instructions_own_image(referenced_out: Path) -> None:
    config, dataset, loader, preprocess = chat_loader(referenced_out, batch_size=8)
    assert isinstance(dataset.transform, MLLMTransform)
    # The same training order, read with the ids the trainer's columns leave out.
    order = load_training_batches(
        referenced_out,
        8,
        table="instructions",
        columns=["source_record_id"],
        seed=config.train.seed,
        buffer_rows=config.train.shuffle_buffer_rows,
    )
    figures = record_images(referenced_out, "train")
    expected = [preprocess(figures[r["source_record_id"]]) for batch in order for r in batch]
    dataset.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 12
    images = torch.cat([b["images"] for b in batches])
    assert images.shape == (96, 3, 32, 32)
    assert torch.equal(images, torch.stack(expected))


def test_mllm_loader_names_an_image_missing_from_the_record_shards(tmp_path: Path) -> None:
    out = write_synthetic_shards(tmp_path / "out", train=8, validation=0, row_group_rows=4)
    shard = out / "shards" / "train" / "part-00000.parquet"
    table = pq.read_table(shard)
    gone = table.column("image_sha256")[3].as_py()
    pq.write_table(pa.concat_tables([table.slice(0, 3), table.slice(4)]), shard)
    _, _, loader, _ = chat_loader(out, batch_size=4)
    with pytest.raises(ImageNotFound, match=gone):
        list(loader)
