"""LLaVA-style multimodal LLM: a frozen vision tower's patch tokens, a `linear` or
`mlp2x_gelu` projector, and a causal LM, with the `<image>` placeholder replaced by the
projected patch tokens. Stage 1 (`plain`) trains the projector on captions; stage 2 (`chat`)
trains projector + LM on instruction conversations with the human turns masked from the loss.
Reads data only through the shard readers; the training loop is `curate.train.mllm_train`."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curate.errors import InputError, SpecError
from curate.shards.loader import load_shards
from curate.shards.training import SAMPLE_SEED, load_training_batches
from curate.train import checkpoint as ckpt
from curate.train.config import CFMConfig, MLLMConfig, MLLMStage, VisionConfig
from curate.train.data import MappedBatches, make_loader, shard_columns
from curate.train.text import tokenizer_from_str, train_wordpiece
from curate.train.vision import ImagePreprocess, build_vision_tower

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
IGNORE = -100
RECORD_TABLE = "shards"  # the table whose rows hold the image bytes themselves


# ---------------------------------------------------------------- tokenizer


class LMTokenizer:
    """Plain-text <-> ids for the LM: a WordPiece trained on the shards (tiny LMs) or a local
    Hugging Face tokenizer. `<image>` and `</s>` are single special tokens."""

    def __init__(self, serialised: str | None = None, hf_path: str | None = None) -> None:
        self.serialised, self.hf_path = serialised, hf_path
        if serialised is not None:
            self.backend = tokenizer_from_str(serialised)
            self.image_id = self.backend.token_to_id(IMAGE_TOKEN)
            self.eos_id = self.backend.token_to_id(EOS_TOKEN)
            self.pad_id = self.backend.token_to_id(PAD_TOKEN)
            self.eos = EOS_TOKEN
        elif hf_path is not None:
            from transformers import AutoTokenizer

            self.backend = AutoTokenizer.from_pretrained(hf_path, local_files_only=True)
            if IMAGE_TOKEN not in self.backend.get_vocab():
                self.backend.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
            self.image_id = self.backend.convert_tokens_to_ids(IMAGE_TOKEN)
            self.eos_id = self.backend.eos_token_id
            self.eos = self.backend.eos_token
            self.pad_id = self.backend.pad_token_id
            if self.pad_id is None:
                self.pad_id = self.eos_id
        else:
            raise SpecError("LMTokenizer needs a serialised tokenizer or a local path")

    @classmethod
    def train(cls, texts: Any, vocab_size: int) -> LMTokenizer:
        backend = train_wordpiece(texts, vocab_size, [PAD_TOKEN, UNK_TOKEN, IMAGE_TOKEN, EOS_TOKEN])
        return cls(serialised=backend.to_str())

    def __len__(self) -> int:
        if self.serialised is not None:
            return self.backend.get_vocab_size()
        return len(self.backend)

    def encode(self, text: str) -> list[int]:
        if self.serialised is not None:
            return self.backend.encode(text, add_special_tokens=False).ids
        return self.backend(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.backend.decode(ids, skip_special_tokens=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"serialised": self.serialised, "hf_path": self.hf_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        LMTokenizer.__init__(self, state["serialised"], state["hf_path"])


# ---------------------------------------------------------------- templates


def turns_of(conversations: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(human, gpt) rounds; a trailing human turn without answer gets an empty answer."""
    rounds: list[tuple[str, str]] = []
    pending: str | None = None
    for turn in conversations or []:
        speaker, value = turn.get("from"), turn.get("value") or ""
        if speaker == "human":
            pending = value
        elif speaker == "gpt" and pending is not None:
            rounds.append((pending, value))
            pending = None
    if pending is not None:
        rounds.append((pending, ""))
    return rounds


def with_image(question: str) -> str:
    question = question.replace(IMAGE_TOKEN, "").strip()
    return f"{IMAGE_TOKEN}\n{question}"


def tokenize_plain(tokenizer: LMTokenizer, caption: str) -> tuple[list[int], list[int]]:
    """LLaVA's `plain` template: <image> caption </s>; the image position is not a target."""
    ids = [tokenizer.image_id, *tokenizer.encode(caption), tokenizer.eos_id]
    return ids, [IGNORE, *ids[1:]]


def chat_prompt(system: str, rounds: list[tuple[str, str]], eos: str) -> tuple[str, list[str]]:
    """Vicuna-v1 style text and its rounds: `SYSTEM USER: q ASSISTANT: a</s>USER: ...`."""
    pieces = [f"USER: {q} ASSISTANT: {a}{eos}" for q, a in rounds]
    return system + " " + "".join(pieces), pieces


def tokenize_chat(
    tokenizer: LMTokenizer, system: str, conversations: list[dict[str, str]]
) -> tuple[list[int], list[int], bool]:
    """(ids, labels, mismatch). Human turns and the system prompt are masked (-100).

    LLaVA's guard: the text is tokenised whole, the target positions come from tokenising each
    round separately; if the two lengths disagree (a tokenizer that merges across the round
    boundary) the whole sample is masked and reported as a mismatch rather than trained on
    misaligned targets.
    """
    rounds = turns_of(conversations)
    if not rounds:
        raise InputError("conversation without a human turn")
    rounds[0] = (with_image(rounds[0][0]), rounds[0][1])
    text, pieces = chat_prompt(system, rounds, tokenizer.eos)
    ids = tokenizer.encode(text)
    labels = list(ids)
    cursor = len(tokenizer.encode(system))
    labels[:cursor] = [IGNORE] * cursor
    for (question, _), piece in zip(rounds, pieces):
        piece_len = len(tokenizer.encode(piece))
        instruction_len = len(tokenizer.encode(f"USER: {question} ASSISTANT:"))
        labels[cursor : cursor + instruction_len] = [IGNORE] * instruction_len
        cursor += piece_len
    mismatch = cursor != len(ids)
    if mismatch:
        labels = [IGNORE] * len(ids)
    return ids, labels, mismatch


def generation_prompt(
    tokenizer: LMTokenizer, system: str, conversations: list[dict[str, str]]
) -> tuple[list[int], str]:
    """Prompt ids up to `ASSISTANT:` of the last round, and that round's reference answer."""
    rounds = turns_of(conversations)
    if not rounds:
        raise InputError("conversation without a human turn")
    rounds[0] = (with_image(rounds[0][0]), rounds[0][1])
    history, (question, answer) = rounds[:-1], rounds[-1]
    text, _ = chat_prompt(system, history, tokenizer.eos)
    return tokenizer.encode(f"{text}USER: {question} ASSISTANT:"), answer


# ---------------------------------------------------------------- model


class FrozenVision(nn.Module):
    """Patch tokens (CLS dropped) from one hidden layer of a frozen image tower."""

    def __init__(self, tower: Any, layer: int) -> None:
        super().__init__()
        self.tower: Any = tower.eval().requires_grad_(False)
        self.layer = layer
        self.width = tower.width

    def train(self, mode: bool = True) -> FrozenVision:
        super().train(False)  # frozen: never switch dropout back on
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, hidden = self.tower.forward_tokens(images)
        return hidden[self.layer][:, 1:]


def build_projector(kind: str, vision_width: int, lm_width: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(vision_width, lm_width)
    return nn.Sequential(
        nn.Linear(vision_width, lm_width), nn.GELU(), nn.Linear(lm_width, lm_width)
    )


def _cache_kwarg(lm: nn.Module) -> str:
    params = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    # transformers 5 names the returned cache `cache`; older versions `past_key_values`.
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class MLLM(nn.Module):
    def __init__(
        self, vision: FrozenVision, projector: nn.Module, lm: Any, tokenizer: LMTokenizer
    ) -> None:
        super().__init__()
        self.vision = vision
        self.projector = projector
        self.lm = lm
        self.image_id = tokenizer.image_id
        self.pad_id = tokenizer.pad_id
        self.eos_id = tokenizer.eos_id
        self._cache_name = _cache_kwarg(lm)

    def image_embeddings(self, images: torch.Tensor, zero_image: bool = False) -> torch.Tensor:
        features = self.vision(images)
        if zero_image:
            features = torch.zeros_like(features)
        return self.projector(features)

    def splice(
        self,
        ids: list[list[int]],
        labels: list[list[int]] | None,
        image_embeds: torch.Tensor,
        left_pad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Replace each sample's single `<image>` id by its projected patch tokens; pad."""
        embed = self.lm.get_input_embeddings()
        device = image_embeds.device
        sequences, targets = [], []
        for row, sample in enumerate(ids):
            positions = [i for i, t in enumerate(sample) if t == self.image_id]
            if len(positions) != 1:
                raise InputError(f"sample has {len(positions)} image tokens; expected exactly 1")
            at = positions[0]
            tokens = embed(torch.tensor(sample, device=device))
            image = image_embeds[row].to(tokens.dtype)
            sequences.append(torch.cat([tokens[:at], image, tokens[at + 1 :]]))
            if labels is not None:
                lab = labels[row]
                targets.append(lab[:at] + [IGNORE] * image.shape[0] + lab[at + 1 :])
        length = max(s.shape[0] for s in sequences)
        width = sequences[0].shape[1]
        inputs = sequences[0].new_zeros(len(sequences), length, width)
        mask = torch.zeros(len(sequences), length, dtype=torch.long, device=device)
        label_tensor = torch.full((len(sequences), length), IGNORE, dtype=torch.long, device=device)
        for row, seq in enumerate(sequences):
            span = slice(length - seq.shape[0], length) if left_pad else slice(0, seq.shape[0])
            inputs[row, span] = seq
            mask[row, span] = 1
            if labels is not None:
                label_tensor[row, span] = torch.tensor(targets[row], device=device)
        return inputs, (label_tensor if labels is not None else None), mask

    def forward(
        self,
        images: torch.Tensor,
        ids: list[list[int]],
        labels: list[list[int]],
        zero_image: bool = False,
    ) -> torch.Tensor:
        inputs, targets, mask = self.splice(ids, labels, self.image_embeddings(images, zero_image))
        out = self.lm(inputs_embeds=inputs, attention_mask=mask, labels=targets)
        return out.loss

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        prompts: list[list[int]],
        max_new_tokens: int,
        zero_image: bool = False,
    ) -> list[list[int]]:
        """Greedy decoding with the KV cache; left padding keeps the last position aligned."""
        inputs, _, mask = self.splice(
            prompts, None, self.image_embeddings(images, zero_image), left_pad=True
        )
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.lm(
            inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=True
        )
        generated: list[list[int]] = [[] for _ in prompts]
        done = torch.zeros(len(prompts), dtype=torch.bool, device=mask.device)
        for _ in range(max_new_tokens):
            next_ids = out.logits[:, -1].argmax(-1)
            for row, token in enumerate(next_ids.tolist()):
                if not done[row]:
                    generated[row].append(token)
            done |= next_ids == self.eos_id
            if bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.lm(
                input_ids=next_ids[:, None],
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_name: _cache_of(out)},
            )
        return generated


# ---------------------------------------------------------------- construction


def load_vision(
    config: MLLMConfig, state: dict[str, Any] | None
) -> tuple[FrozenVision, ImagePreprocess, dict[str, Any]]:
    tower: Any
    """The frozen tower and its preprocessing, from the MLLM checkpoint (when resuming or
    evaluating), a CFM checkpoint, or a local Hugging Face vision model."""
    mc = config.model
    if state is not None and state.get("vision") is not None:
        vision_cfg = VisionConfig.model_validate(state["vision"]["config"])
        tower = build_vision_tower(vision_cfg)
        if state["vision"].get("state") is not None:
            tower.load_state_dict(state["vision"]["state"])
        record = state["vision"]
    elif mc.vision_checkpoint:
        cfm_state = ckpt.load(
            Path(mc.vision_checkpoint) / ckpt.CHECKPOINT_NAME
            if Path(mc.vision_checkpoint).is_dir()
            else mc.vision_checkpoint
        )
        if cfm_state.get("kind") != "cfm":
            raise SpecError(f"{mc.vision_checkpoint} is not a CFM checkpoint")
        vision_cfg = CFMConfig.model_validate(cfm_state["config"]).model.vision
        tower = build_vision_tower(vision_cfg)
        prefix = "visual."
        tower.load_state_dict(
            {k[len(prefix) :]: v for k, v in cfm_state["model"].items() if k.startswith(prefix)}
        )
        record = {"config": vision_cfg.model_dump(mode="json"), "state": tower.state_dict()}
    elif mc.vision_path:
        vision_cfg = _hf_vision_config(mc.vision_path)
        tower = build_vision_tower(vision_cfg)
        record = {"config": vision_cfg.model_dump(mode="json"), "state": None}
    else:
        raise SpecError("the MLLM needs model.vision_checkpoint (a CFM run) or model.vision_path")
    return FrozenVision(tower, mc.vision_layer), ImagePreprocess.from_config(vision_cfg), record


def _hf_vision_config(path: str) -> VisionConfig:
    processor = Path(path) / "preprocessor_config.json"
    size, mean, std = 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    if processor.is_file():
        data = json.loads(processor.read_text())
        raw = data.get("crop_size") or data.get("size") or size
        size = raw if isinstance(raw, int) else raw.get("height", raw.get("shortest_edge", size))
        mean = tuple(data.get("image_mean", mean))
        std = tuple(data.get("image_std", std))
    return VisionConfig(kind="hf", path=path, image_size=size, mean=mean, std=std)


def build_lm(config: MLLMConfig, tokenizer: LMTokenizer, extra_positions: int) -> Any:
    lm_cfg = config.model.lm
    if lm_cfg.kind == "hf":
        from transformers import AutoModelForCausalLM

        if not lm_cfg.path:
            raise SpecError("lm.kind 'hf' needs `path` to a local model directory")
        lm: Any = AutoModelForCausalLM.from_pretrained(lm_cfg.path, local_files_only=True)
        if len(tokenizer) > lm.get_input_embeddings().weight.shape[0]:
            lm.resize_token_embeddings(len(tokenizer))
        return lm
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=lm_cfg.hidden_size,
        intermediate_size=lm_cfg.intermediate_size,
        num_hidden_layers=lm_cfg.layers,
        num_attention_heads=lm_cfg.heads,
        num_key_value_heads=lm_cfg.heads,
        max_position_embeddings=lm_cfg.max_length + extra_positions,
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(hf_config)


def apply_lora(lm: nn.Module, config: MLLMConfig) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise SpecError("model.lora.enabled needs the `peft` package (pip install peft)") from exc
    lora = config.model.lora
    return get_peft_model(
        lm,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )


def mllm_texts(data_dir: str | Path, config: MLLMConfig) -> Any:
    """Texts a from-scratch tokenizer learns from: captions, conversation turns, the template."""
    limit = config.model.lm.tokenizer_sample
    yield config.model.system_prompt
    yield "USER: ASSISTANT:"
    for stage in config.stages:
        split = config.train.train_split
        if stage.template == "plain":
            column = config.train.text_column
            for count, row in enumerate(
                load_shards(data_dir, split=split, columns=[column], table=stage.table)
            ):
                if count >= limit:
                    break
                yield row.get(column) or ""
        else:
            for count, row in enumerate(
                load_shards(data_dir, split=split, columns=["conversations"], table=stage.table)
            ):
                if count >= limit:
                    break
                for turn in row.get("conversations") or []:
                    yield turn.get("value") or ""


def build_mllm(
    config: MLLMConfig, state: dict[str, Any] | None = None, data_dir: str | Path | None = None
) -> tuple[MLLM, LMTokenizer, ImagePreprocess, dict[str, Any]]:
    vision, preprocess, vision_record = load_vision(config, state)
    lm_cfg = config.model.lm
    if state is not None:
        tokenizer = LMTokenizer(state["tokenizer"]["serialised"], state["tokenizer"]["hf_path"])
    elif lm_cfg.kind == "hf":
        tokenizer = LMTokenizer(hf_path=lm_cfg.path)
    else:
        if data_dir is None:
            raise SpecError("a from-scratch LM tokenizer needs the training data")
        tokenizer = LMTokenizer.train(mllm_texts(data_dir, config), lm_cfg.vocab_size)
    with torch.no_grad():
        size = preprocess.size
        patches = vision(torch.zeros(1, 3, size, size)).shape[1]
    lm = build_lm(config, tokenizer, extra_positions=patches + 8)
    if state is not None and state.get("lora_applied"):
        lm = apply_lora(lm, config)
    lm_width = lm.get_input_embeddings().weight.shape[1]
    projector = build_projector(config.model.projector, vision.width, lm_width)
    model = MLLM(vision, projector, lm, tokenizer)
    if state is not None:
        model.projector.load_state_dict(state["projector"])
        model.lm.load_state_dict(state["lm"])
    return model, tokenizer, preprocess, vision_record


# ---------------------------------------------------------------- data


class MLLMTransform:
    """row -> (image tensor, ids, labels, mismatch) for one template; None when unusable."""

    def __init__(
        self,
        template: str,
        tokenizer: LMTokenizer,
        preprocess: ImagePreprocess,
        system: str,
        text_column: str,
        max_length: int,
    ) -> None:
        self.template, self.tokenizer, self.preprocess = template, tokenizer, preprocess
        self.system, self.text_column, self.max_length = system, text_column, max_length

    def __call__(
        self, row: dict[str, Any]
    ) -> tuple[torch.Tensor, list[int], list[int], bool] | None:
        if not row.get("image"):
            return None
        try:
            image = self.preprocess(row["image"], row.get(SAMPLE_SEED))
            if self.template == "plain":
                caption = row.get(self.text_column) or ""
                if not caption.strip():
                    return None
                ids, labels = tokenize_plain(self.tokenizer, caption)
                mismatch = False
            else:
                ids, labels, mismatch = tokenize_chat(
                    self.tokenizer, self.system, row.get("conversations") or []
                )
        except InputError as exc:
            log.warning("row %s: %s", row.get("record_id"), exc)
            return None
        return image, ids[: self.max_length], labels[: self.max_length], mismatch


def mllm_collate(items: list[tuple[torch.Tensor, list[int], list[int], bool]]) -> dict[str, Any]:
    return {
        "images": torch.stack([i[0] for i in items]),
        "ids": [i[1] for i in items],
        "labels": [i[2] for i in items],
        "mismatches": sum(int(i[3]) for i in items),
    }


def references_images(table: str) -> bool:
    """Tables other than the record shards (instructions) may name their image by
    image_sha256 only; the loader joins the bytes from the record shards of the split."""
    return table != RECORD_TABLE


def stage_loader(
    config: MLLMConfig,
    stage: MLLMStage,
    data_dir: str | Path,
    tokenizer: LMTokenizer,
    preprocess: ImagePreprocess,
    rank: int = 0,
    world: int = 1,
):
    tc = config.train
    columns = ["image", tc.text_column] if stage.template == "plain" else ["image", "conversations"]
    available = shard_columns(data_dir, tc.train_split, stage.table)
    missing = [c for c in columns if c not in available]
    if missing:
        raise InputError(
            f"table {stage.table!r} lacks columns {missing} for the {stage.template!r} template"
        )
    source = load_training_batches(
        data_dir,
        tc.batch_size,
        split=tc.train_split,
        columns=columns,
        seed=tc.seed,
        rank=rank,
        world_size=world,
        buffer_rows=tc.shuffle_buffer_rows,
        table=stage.table,
        attach_images=references_images(stage.table),
    )
    transform = MLLMTransform(
        stage.template,
        tokenizer,
        preprocess,
        config.model.system_prompt,
        tc.text_column,
        config.model.lm.max_length,
    )
    dataset = MappedBatches(source, transform, mllm_collate)
    return dataset, make_loader(dataset, tc.num_workers, tc.seed)


# ---------------------------------------------------------------- training


def set_trainable(model: MLLM, stage: MLLMStage) -> None:
    model.vision.requires_grad_(False)
    model.projector.requires_grad_(True)
    if not stage.train_lm:
        model.lm.requires_grad_(False)
    elif not hasattr(model.lm, "peft_config"):
        model.lm.requires_grad_(True)
    # with LoRA, peft already left only the adapters trainable
