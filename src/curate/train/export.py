"""Load a trained CFM checkpoint as an embedding model (the bridge back into curation).

image_encoder, text_encoder, preprocess = load_cfm_checkpoint("run/checkpoint.pt")
pixels = torch.stack([preprocess(image_bytes) for image_bytes in batch])   # (B, 3, S, S)
image_vectors = image_encoder(pixels)        # (B, embed_dim) float32, L2-normalised
text_vectors = text_encoder(["a caption"])   # (N, embed_dim) float32, L2-normalised
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import InputError
from curate.train import checkpoint as ckpt
from curate.train.config import CFMConfig
from curate.train.vision import ImagePreprocess


class CFMImageEncoder(nn.Module):
    """(B, 3, S, S) normalised pixels -> (B, D) unit vectors."""

    def __init__(self, visual: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.projection = projection

    @property
    def device(self) -> torch.device:
        return next(self.projection.parameters()).device

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.projection(self.visual(images.to(self.device)))
        return F.normalize(features.float(), dim=-1)


class CFMTextEncoder(nn.Module):
    """list of strings -> (N, D) unit vectors (tokenises internally)."""

    def __init__(self, tokenizer: Any, text: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.text = text
        self.projection = projection

    @property
    def device(self) -> torch.device:
        return next(self.projection.parameters()).device

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenizer(list(texts))
        features = self.projection(self.text(ids.to(self.device), mask.to(self.device)))
        return F.normalize(features.float(), dim=-1)


def load_cfm_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer, preprocess, checkpoint payload) in eval mode."""
    from curate.train.cfm import build_cfm

    path = Path(path)
    if path.is_dir():
        path = path / ckpt.CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(f"no CFM checkpoint at {path}")
    state = ckpt.load(path)
    if state.get("kind") != "cfm":
        raise InputError(f"{path} is not a CFM checkpoint (kind={state.get('kind')!r})")
    config = CFMConfig.model_validate(state["config"])
    model, tokenizer, preprocess = build_cfm(config, tokenizer_str=state["tokenizer"])
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, tokenizer, preprocess, state


def load_cfm_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CFMImageEncoder, CFMTextEncoder, ImagePreprocess]:
    """A trained CFM as (image_encoder, text_encoder, preprocess); see the module docstring.
    `path` is a checkpoint file or a run directory holding `checkpoint.pt`."""
    model, tokenizer, preprocess, _ = load_cfm_model(path, device)
    image_encoder = CFMImageEncoder(model.visual, model.image_projection).eval()
    text_encoder = CFMTextEncoder(tokenizer, model.text, model.text_projection).eval()
    return image_encoder, text_encoder, preprocess
