"""open_clip checkpoint interop, by file format only (open_clip itself is not needed).

open_clip (and the Hugging Face hub's open_clip models) keep a model as a folder with
`open_clip_config.json` ({"model_cfg": {...}, "preprocess_cfg": {...}}) and
`open_clip_pytorch_model.bin` (a plain state_dict; `.safetensors` also read); its training
runs write `epoch_N.pt` ({"state_dict": ...}, keys prefixed `module.` under DDP).

Key mapping between open_clip's built-in CLIP (VisionTransformer, TextTransformer) and the CFM:

    open_clip                                   CFM
    visual.conv1.weight                         visual.conv1.weight
    visual.class_embedding                      visual.class_embedding
    visual.positional_embedding                 visual.positional_embedding
    visual.ln_pre.* / visual.ln_post.*          visual.ln_pre.* / visual.ln_post.*
    visual.transformer.resblocks.{i}.ln_1.*     visual.blocks.{i}.ln_1.*   (ln_2 likewise)
    visual.transformer.resblocks.{i}.attn.*     visual.blocks.{i}.attn.*   (in_proj_*, out_proj.*)
    visual.transformer.resblocks.{i}.mlp.c_fc.* visual.blocks.{i}.mlp.0.*
    visual.transformer.resblocks.{i}.mlp.c_proj.*  visual.blocks.{i}.mlp.3.*
    visual.proj            (width, embed)       image_projection.weight (embed, width), transposed
    token_embedding.weight                      text.token_embedding.weight
    positional_embedding                        text.positional_embedding
    transformer.resblocks.{i}.*                 text.blocks.{i}.*  (as the visual blocks)
    ln_final.*                                  text.ln_final.*
    text_projection        (width, embed)       text_projection.weight (embed, width), transposed
    logit_scale                                 logit_scale

The image towers are the same architecture (pre-norm ViT, class token, ln_pre, GELU MLP), so an
open_clip ViT image tower loads into the CFM's (set `gelu` models only: OpenAI's QuickGELU
weights load but compute slightly differently). The text towers share shapes but not behaviour:
open_clip's is causal and pools at the end-of-text token with its own BPE tokenizer, the CFM's
is bidirectional, pools [CLS] and uses its WordPiece. So the text tower is imported only from a
checkpoint this module exported (its config says so); from any other, only `visual.*` is
loaded. BiomedCLIP-style checkpoints (timm `visual.trunk.*`, Hugging Face BERT text) are a
different architecture (patch-embedding bias, no ln_pre) and are refused with that reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from curate.errors import InputError
from curate.train.config import CFMConfig

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_pytorch_model.bin"
TOKENIZER_FILE = "tokenizer.json"
EXPORTER = "curate"

_BLOCK = {"mlp.c_fc": "mlp.0", "mlp.c_proj": "mlp.3"}


def _block_to_cfm(rest: str) -> str:
    for theirs, ours in _BLOCK.items():
        if rest.startswith(theirs + "."):
            return ours + rest[len(theirs) :]
    return rest


def _block_to_open_clip(rest: str) -> str:
    for theirs, ours in _BLOCK.items():
        if rest.startswith(ours + "."):
            return theirs + rest[len(ours) :]
    return rest


def key_to_cfm(key: str) -> str | None:
    """The CFM name of an open_clip key (None: no counterpart, e.g. the causal mask)."""
    match = re.fullmatch(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)", key)
    if match:
        tower = "visual" if match.group(1) else "text"
        return f"{tower}.blocks.{match.group(2)}.{_block_to_cfm(match.group(3))}"
    if key == "visual.proj":
        return "image_projection.weight"
    if key == "text_projection":
        return "text_projection.weight"
    if key == "logit_scale" or key.startswith("visual."):
        return key
    if key.split(".")[0] in ("token_embedding", "positional_embedding", "ln_final"):
        return f"text.{key}"
    return None


def key_to_open_clip(key: str) -> str | None:
    match = re.fullmatch(r"(visual|text)\.blocks\.(\d+)\.(.+)", key)
    if match:
        prefix = "visual." if match.group(1) == "visual" else ""
        return (
            f"{prefix}transformer.resblocks.{match.group(2)}.{_block_to_open_clip(match.group(3))}"
        )
    if key == "image_projection.weight":
        return "visual.proj"
    if key == "text_projection.weight":
        return "text_projection"
    if key == "logit_scale" or key.startswith("visual."):
        return key
    if key.startswith("text."):
        return key[len("text.") :]
    return None


def _transposed(cfm_key: str) -> bool:
    return cfm_key in ("image_projection.weight", "text_projection.weight")


def model_config_of(config: CFMConfig) -> dict[str, Any]:
    """open_clip's `open_clip_config.json` for a CFM with the built-in towers."""
    model, vision, text = config.model, config.model.vision, config.model.text
    if vision.kind != "vit" or text.kind != "transformer":
        raise InputError("open_clip export needs the built-in ViT and text transformer")
    return {
        "model_cfg": {
            "embed_dim": model.embed_dim,
            "vision_cfg": {
                "image_size": vision.image_size,
                "patch_size": vision.patch_size,
                "width": vision.width,
                "layers": vision.layers,
                "head_width": vision.width // vision.heads,
                "mlp_ratio": vision.mlp_ratio,
            },
            "text_cfg": {
                "context_length": text.context_length,
                "vocab_size": text.vocab_size,
                "width": text.width,
                "heads": text.heads,
                "layers": text.layers,
                "mlp_ratio": text.mlp_ratio,
            },
        },
        "preprocess_cfg": {
            "mean": list(vision.mean),
            "std": list(vision.std),
            "interpolation": "bicubic",
            "resize_mode": "shortest" if vision.resize == "shortest" else "squash",
        },
        # Not open_clip's: how the text tower differs from open_clip's (see the module doc).
        "exported_by": {
            "name": EXPORTER,
            "text_tower": "bidirectional, [CLS] pooling, WordPiece tokenizer in tokenizer.json",
            "cfm_config": config.model_dump(mode="json"),
        },
    }


def export_open_clip(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write a CFM checkpoint as an open_clip model folder; returns the folder."""
    from curate.train import checkpoint as ckpt

    path = Path(checkpoint)
    state = ckpt.load(path / ckpt.CHECKPOINT_NAME if path.is_dir() else path)
    if state.get("kind") != "cfm":
        raise InputError(f"{checkpoint} is not a CFM checkpoint")
    config = CFMConfig.model_validate(state["config"])
    weights = {}
    for key, tensor in state["model"].items():
        theirs = key_to_open_clip(key)
        if theirs is not None:
            weights[theirs] = tensor.t().contiguous() if _transposed(key) else tensor
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(model_config_of(config), indent=2))
    if state.get("tokenizer"):
        (out / TOKENIZER_FILE).write_text(state["tokenizer"])
    return out


def read_open_clip(source: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state_dict, open_clip config or None) from a model folder, a weights file or an
    open_clip training checkpoint (`module.` prefixes removed)."""
    path = Path(source)
    config = None
    if path.is_dir():
        config_path = path / CONFIG_FILE
        config = json.loads(config_path.read_text()) if config_path.is_file() else None
        candidates = [path / WEIGHTS_FILE, path / "open_clip_model.safetensors"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise InputError(f"{source}: no {WEIGHTS_FILE} or open_clip_model.safetensors")
        path = found[0]
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}, config


def import_open_clip(model: torch.nn.Module, source: str | Path) -> dict[str, Any]:
    """Load open_clip weights into a CFM where the architecture matches (see the module doc).
    Returns {"loaded": [CFM keys], "ignored": [open_clip keys], "text": bool}; a shape that
    differs, or a tower with no counterpart, is an InputError naming the keys."""
    weights, config = read_open_clip(source)
    if any(k.startswith("visual.trunk.") for k in weights):
        raise InputError(
            f"{source}: a timm image tower (visual.trunk.*, BiomedCLIP-style) is not the "
            "built-in ViT (patch-embedding bias, no ln_pre); use vision.kind 'module' or 'hf'"
        )
    with_text = bool(config and config.get("exported_by", {}).get("name") == EXPORTER)
    ours = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    ignored, mismatched = [], []
    for key, tensor in weights.items():
        target = key_to_cfm(key)
        if target is None or (not with_text and not target.startswith("visual.")):
            ignored.append(key)
            continue
        value = tensor.t() if _transposed(target) else tensor
        if target not in ours:
            ignored.append(key)
        elif ours[target].shape != value.shape:
            mismatched.append(f"{key} {tuple(value.shape)} vs {target} {tuple(ours[target].shape)}")
        else:
            loaded[target] = value
    if mismatched:
        raise InputError(f"{source}: shapes differ: " + "; ".join(mismatched[:5]))
    expected = [k for k in ours if k.startswith("visual.") or with_text]
    absent = [k for k in expected if k not in loaded]
    if absent:
        raise InputError(f"{source}: the checkpoint lacks {absent[:5]} for the CFM's towers")
    model.load_state_dict(loaded, strict=False)
    return {"loaded": sorted(loaded), "ignored": sorted(ignored), "text": with_text}
