"""Item 4: `to_hf_dataset()` and `curate export hf` give `datasets.Image()` columns that decode
to PIL images; `curate export webdataset` writes tar shards the `webdataset` package reads back
(the layout open_clip's --train-data uses)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import webdataset as wds
from PIL import Image

from curate.cli import main
from curate.shards.loader import load_shards


def _kept(out: Path, split: str) -> dict[str, dict]:
    rows = load_shards(out, split=split, columns=["record_id", "caption", "image_sha256"])
    return {r["record_id"]: r for r in rows}


def test_to_hf_dataset_decodes_images(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    dataset = load_shards(out, split="train").to_hf_dataset()
    assert isinstance(dataset.features["image"], datasets.Image)
    first = dataset[0]
    assert isinstance(first["image"], Image.Image) and first["image"].size[0] > 0
    assert sorted(dataset["record_id"]) == sorted(_kept(out, "train"))


def test_export_hf_opens_with_load_dataset(
    core_build: tuple[Path, str, str], tmp_path: Path
) -> None:
    out, _, _ = core_build
    dest = tmp_path / "hf"
    assert main(["export", "hf", "--data", str(out), "--out", str(dest)]) == 0
    loaded = datasets.load_dataset(str(dest), cache_dir=str(tmp_path / "cache"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s: len(loaded[s]) for s in loaded} == manifest["splits"]
    row = loaded["train"][0]
    assert isinstance(row["image"], Image.Image)
    assert row["record_id"] in _kept(out, "train")
    readme = (dest / "README.md").read_text()
    assert readme.startswith("---\n") and "path: data/train-*.parquet" in readme


def test_export_webdataset_reads_back(core_build: tuple[Path, str, str], tmp_path: Path) -> None:
    out, _, _ = core_build
    dest = tmp_path / "wds"
    args = ["export", "webdataset", "--data", str(out), "--out", str(dest), "--shard-size", "3"]
    assert main([*args, "--split", "train"]) == 0
    kept = _kept(out, "train")
    shards = sorted(dest.glob("train-*.tar"))
    assert len(shards) == -(-len(kept) // 3)
    sizes = json.loads((dest / "sizes.json").read_text())
    assert sum(sizes.values()) == len(kept) and set(sizes) == {s.name for s in shards}
    # as open_clip reads it: decode to PIL, take image and text
    pipeline = wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("pil")
    seen = {}
    for sample in pipeline:
        image = sample.get("jpg") or sample.get("png")
        assert isinstance(image, Image.Image)
        meta = sample["json"]
        assert sample["txt"] == kept[meta["record_id"]]["caption"]
        seen[meta["record_id"]] = meta
    assert set(seen) == set(kept)
    again = tmp_path / "again"
    assert main(["export", "webdataset", "--data", str(out), "--out", str(again)]) == 0
    assert main([*args[:5], str(again / "3"), "--shard-size", "3"]) == 0
    for shard in shards:  # the same build exports the same bytes
        assert (again / "3" / shard.name).read_bytes() == shard.read_bytes()


def test_export_of_a_missing_split_is_a_clear_error(
    core_build: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    args = ["export", "webdataset", "--data", str(out), "--out", str(tmp_path), "--split", "dev"]
    assert main(args) == 2
    assert "no shards/dev/*.parquet" in capsys.readouterr().err
