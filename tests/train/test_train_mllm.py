"""MLLM: templates and masking, the mismatch guard, splicing, learning beyond both baselines,
resume, LoRA."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from curate.errors import SpecError
from curate.train.config import load_config
from curate.train.mllm import (
    IGNORE,
    LMTokenizer,
    generation_prompt,
    tokenize_chat,
    tokenize_plain,
)
from curate.train.mllm_eval import evaluate_mllm, summary_lines
from curate.train.mllm_train import train_mllm


@pytest.fixture(scope="module")
def tokenizer() -> LMTokenizer:
    texts = [
        "a chat about an image .",
        "USER: ASSISTANT:",
        "is the shape red ? yes no",
        "what shape is shown ? circle square",
        "a red circle in the upper left",
    ] * 5
    return LMTokenizer.train(texts, vocab_size=200)


def conversation(*turns):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(turns)]


def test_chat_template_masks_system_and_human_turns(tokenizer):
    ids, labels, mismatch = tokenize_chat(
        tokenizer,
        "a chat about an image .",
        conversation("is the shape red ?", "yes", "what shape is shown ?", "circle"),
    )
    assert not mismatch
    assert ids.count(tokenizer.image_id) == 1
    targets = [tokenizer.backend.id_to_token(t) for t, lab in zip(ids, labels) if lab != IGNORE]
    assert targets == ["yes", "</s>", "circle", "</s>"]
    assert len(ids) == len(labels)


def test_plain_template_learns_the_caption_only(tokenizer):
    ids, labels = tokenize_plain(tokenizer, "a red circle")
    assert ids[0] == tokenizer.image_id and labels[0] == IGNORE
    assert labels[1:] == ids[1:]
    assert ids[-1] == tokenizer.eos_id


class MergingTokenizer(LMTokenizer):
    """Tokenises a whole text with one token fewer than its rounds, as a BPE that merges
    across a round boundary would."""

    def encode(self, text):
        ids = super().encode(text)
        return ids[:-1] if text.count("USER:") > 1 else ids


def test_tokenisation_mismatch_masks_the_whole_sample(tokenizer):
    merging = MergingTokenizer(serialised=tokenizer.serialised)
    ids, labels, mismatch = tokenize_chat(
        merging,
        "a chat about an image .",
        conversation("is the shape red ?", "yes", "what shape is shown ?", "circle"),
    )
    assert mismatch
    assert set(labels) == {IGNORE}
    assert len(labels) == len(ids)


def test_generation_prompt_ends_at_the_assistant_turn(tokenizer):
    prompt, answer = generation_prompt(
        tokenizer, "a chat about an image .", conversation("is the shape red ?", "yes")
    )
    assert answer == "yes"
    assert tokenizer.backend.decode(prompt[-2:]) == "assistant :"
    assert prompt.count(tokenizer.image_id) == 1


def test_mllm_beats_zeroed_image_and_majority_baselines(trained_mllm, synthetic_out, tmp_path):
    record = evaluate_mllm(
        trained_mllm,
        synthetic_out,
        split="validation",
        device="cpu",
        metrics_path=tmp_path / "m.jsonl",
    )
    results = record["results"]
    assert record["rows"] == 1200
    model, zeroed, majority = results["model"], results["zeroed_image"], results["majority"]
    assert model["closed_count"] == 600
    assert model["closed_accuracy"] >= zeroed["closed_accuracy"] + 0.15
    assert model["closed_accuracy"] >= majority["closed_accuracy"] + 0.15
    assert model["choice_accuracy"] >= zeroed["choice_accuracy"] + 0.3
    assert model["open_recall"] >= majority["open_recall"] + 0.2
    assert "closed_accuracy" in "\n".join(summary_lines(record))
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 1


def test_mllm_checkpoint_holds_the_frozen_vision_tower(trained_mllm, trained_cfm):
    state = torch.load(trained_mllm, weights_only=False)
    cfm = torch.load(trained_cfm, weights_only=False)
    assert state["kind"] == "mllm" and state["mismatches"] == 0
    for name, tensor in state["vision"]["state"].items():
        assert torch.equal(tensor, cfm["model"][f"visual.{name}"])


def small_mllm_config(cfm_checkpoint, projector="linear"):
    config = load_config("mllm_tiny")
    config.model.vision_checkpoint = str(cfm_checkpoint)
    config.model.projector = projector
    config.train.device = "cpu"
    config.train.batch_size = 16
    config.train.log_every = 1
    config.stages[0].steps = 4
    config.stages[1].steps = 6
    return config


def test_mllm_resume_reproduces_an_uninterrupted_run(small_out, trained_cfm, tmp_path):
    config = small_mllm_config(trained_cfm)
    straight = train_mllm(config, small_out, tmp_path / "a")
    stopped = train_mllm(config, small_out, tmp_path / "b", stop_at=6)
    assert stopped["stopped"] and stopped["step"] == 6
    resumed = train_mllm(config, small_out, tmp_path / "b", resume=True)
    assert resumed["step"] == straight["step"] == 10
    assert resumed["loss"] == straight["loss"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for part in ("projector", "lm"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), (part, name)


def test_stage_one_trains_only_the_projector(small_out, trained_cfm, tmp_path):
    from curate.train import checkpoint as ckpt
    from curate.train.mllm import build_mllm

    config = small_mllm_config(trained_cfm, projector="mlp2x_gelu")
    config.stages = config.stages[:1]
    ckpt.seed_everything(config.train.seed)
    initial, _, _, _ = build_mllm(config, None, small_out)
    train_mllm(config, small_out, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["stage"] == 1
    for name, tensor in initial.lm.state_dict().items():
        assert torch.equal(tensor, state["lm"][name]), name
    changed = [
        not torch.equal(t, state["projector"][n]) for n, t in initial.projector.state_dict().items()
    ]
    assert sorted(state["projector"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert all(changed)


@pytest.mark.skipif(importlib.util.find_spec("peft") is not None, reason="peft is installed")
def test_lora_without_peft_is_a_clear_error(small_out, trained_cfm, tmp_path):
    config = small_mllm_config(trained_cfm)
    config.model.lora.enabled = True
    with pytest.raises(SpecError, match="peft"):
        train_mllm(config, small_out, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed")
def test_lora_trains_adapters_only(small_out, trained_cfm, tmp_path):
    config = small_mllm_config(trained_cfm)
    config.model.lora.enabled = True
    result = train_mllm(config, small_out, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["lora_applied"]
    assert any("lora_A" in name for name in state["lm"])
    assert result["step"] == 10


def test_mllm_from_local_hugging_face_directories(small_out, tmp_path, tokenizer):
    """Vision tower and LM loaded from local HF folders (as a user's real weights would be)."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        ViTConfig,
        ViTModel,
    )

    vision_dir, lm_dir = tmp_path / "vit", tmp_path / "llama"
    ViTModel(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(vision_dir)
    (vision_dir / "preprocessor_config.json").write_text(
        '{"size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5], '
        '"image_std": [0.5, 0.5, 0.5]}'
    )
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend, eos_token="</s>", pad_token="[PAD]", unk_token="[UNK]"
    )
    hf_tokenizer.save_pretrained(lm_dir)
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(hf_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
    ).save_pretrained(lm_dir)
    config = load_config("mllm_tiny")
    config.model.vision_path = str(vision_dir)
    config.model.lm.kind = "hf"
    config.model.lm.path = str(lm_dir)
    config.train.device = "cpu"
    config.train.batch_size = 8
    config.stages[0].steps = 2
    config.stages[1].steps = 2
    result = train_mllm(config, small_out, tmp_path / "run")
    assert result["step"] == 4
    record = evaluate_mllm(
        tmp_path / "run", small_out, device="cpu", limit=8, metrics_path=tmp_path / "m.jsonl"
    )
    assert record["rows"] == 8
    assert set(record["results"]) == {"model", "zeroed_image", "majority"}
