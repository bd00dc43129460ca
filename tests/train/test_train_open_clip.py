"""open_clip checkpoint format: export a trained CFM, import it back exactly, and load the
image tower of a folder laid out as open_clip writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curate.errors import InputError
from curate.train.cfm import build_cfm, train_cfm
from curate.train.config import load_config
from curate.train.open_clip_format import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    export_open_clip,
    import_open_clip,
)


def tiny_config(**train):
    config = load_config("cfm_tiny")
    config.train = config.train.model_copy(
        update={"device": "cpu", "steps": 2, "batch_size": 16, "warmup_steps": 1, **train}
    )
    return config


def fresh_model(config, seed: int, folder: Path | None = None):
    """A new CFM; with `folder`, its text side uses the exported tokenizer (same vocabulary)."""
    torch.manual_seed(seed)
    if folder is not None:
        tokenizer = (folder / "tokenizer.json").read_text()
        return build_cfm(config, tokenizer_str=tokenizer)[0]
    return build_cfm(config, texts=["a red circle", "a blue square"] * 8)[0]


@pytest.fixture(scope="module")
def exported(small_out, tmp_path_factory) -> tuple[Path, Path]:
    run = tmp_path_factory.mktemp("cfm")
    train_cfm(tiny_config(), small_out, run)
    folder = export_open_clip(run, tmp_path_factory.mktemp("open_clip") / "model")
    return run, folder


def test_export_writes_open_clip_names_shapes_and_config(exported):
    _, folder = exported
    weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    config = json.loads((folder / CONFIG_FILE).read_text())
    vision = config["model_cfg"]["vision_cfg"]
    embed = config["model_cfg"]["embed_dim"]
    assert weights["visual.proj"].shape == (vision["width"], embed)
    assert weights["text_projection"].shape == (config["model_cfg"]["text_cfg"]["width"], embed)
    for key in (
        "visual.conv1.weight",
        "visual.class_embedding",
        "visual.ln_pre.weight",
        "visual.transformer.resblocks.0.attn.in_proj_weight",
        "visual.transformer.resblocks.1.mlp.c_fc.weight",
        "visual.transformer.resblocks.1.mlp.c_proj.bias",
        "token_embedding.weight",
        "transformer.resblocks.0.ln_1.weight",
        "ln_final.bias",
        "logit_scale",
    ):
        assert key in weights, key
    assert not any(k.startswith(("text.", "image_projection")) for k in weights)
    assert config["preprocess_cfg"]["resize_mode"] == "shortest"
    assert vision["head_width"] * 4 == vision["width"]


def test_round_trip_restores_every_tensor(exported):
    run, folder = exported
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    model = fresh_model(tiny_config(), seed=123, folder=folder)
    report = import_open_clip(model, folder)
    assert report["text"] is True
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name


def test_a_foreign_open_clip_folder_gives_its_image_tower_only(exported, tmp_path):
    _, folder = exported
    weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config["exported_by"]  # as open_clip writes it
    # an open_clip training checkpoint: {"state_dict": ...} with DDP's module. prefix
    foreign = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, foreign)
    model = fresh_model(tiny_config(), seed=7)
    text_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("text")}
    report = import_open_clip(model, foreign)
    assert report["text"] is False
    assert all(k.startswith("visual.") for k in report["loaded"])
    assert "token_embedding.weight" in report["ignored"]
    assert torch.equal(model.visual.conv1.weight, weights["visual.conv1.weight"])
    for name, tensor in text_before.items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_other_architectures_are_refused_with_the_reason(exported, tmp_path):
    _, folder = exported
    weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    timm = tmp_path / "biomedclip.pt"
    torch.save({"visual.trunk.patch_embed.proj.weight": torch.zeros(1)}, timm)
    with pytest.raises(InputError, match="timm"):
        import_open_clip(fresh_model(tiny_config(), 0), timm)
    wider = load_config("cfm_tiny")
    wider.model.vision.width = 96
    wider.model.vision.heads = 4
    with pytest.raises(InputError, match="shapes differ"):
        import_open_clip(fresh_model(wider, 0), folder)
    del weights["visual.ln_post.weight"]
    partial = tmp_path / "partial.pt"
    torch.save(weights, partial)
    with pytest.raises(InputError, match="lacks"):
        import_open_clip(fresh_model(tiny_config(), 0), partial)


def test_training_starts_from_an_open_clip_folder(exported, small_out, tmp_path):
    run, folder = exported
    config = tiny_config(steps=1, lr=1e-12, warmup_steps=0)
    config.model.init_open_clip = str(folder)
    train_cfm(config, small_out, tmp_path)
    source = torch.load(run / "checkpoint.pt", weights_only=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["tokenizer"] == source["tokenizer"]
    for name in ("visual.conv1.weight", "text.token_embedding.weight", "logit_scale"):
        torch.testing.assert_close(state["model"][name], source["model"][name], atol=1e-6, rtol=0)
