"""The contrastive foundation model (CFM): image tower + text tower, linear projections into a
shared space, L2 normalisation and a learnable temperature (CLIP / BiomedCLIP recipe)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curate.train.config import CFMModelConfig
from curate.train.vision import build_vision_tower


class CFM(nn.Module):
    def __init__(self, config: CFMModelConfig, text_tower: Any) -> None:
        super().__init__()
        self.config = config
        visual: Any = build_vision_tower(config.vision)
        self.visual = visual
        self.text = text_tower
        image_width: int = visual.width
        text_width: int = text_tower.width
        self.image_projection = nn.Linear(image_width, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(text_width, config.embed_dim, bias=False)
        nn.init.normal_(self.image_projection.weight, std=image_width**-0.5)
        nn.init.normal_(self.text_projection.weight, std=text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.image_projection(self.visual(images))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(
        self, ids: torch.Tensor, mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        features = self.text_projection(self.text(ids, mask))
        return F.normalize(features, dim=-1) if normalize else features

    def forward(
        self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"logit_scale": self.logit_scale}
        if self.config.local_loss.enabled:
            image_tokens, _ = self.visual.forward_tokens(images)
            text_tokens = self.text.forward_tokens(ids, mask)
            image_proj = self.image_projection(image_tokens)
            text_proj = self.text_projection(text_tokens)
            out["image_features"] = F.normalize(image_proj[:, 0], dim=-1)
            out["text_features"] = F.normalize(self._pool_text(text_tokens, mask), dim=-1)
            out["patch_tokens"] = image_proj[:, 1:]
            word_mask = mask.clone()
            word_mask[:, 0] = False  # the pooled [CLS] position is not a word
            out["word_tokens"], out["word_mask"] = text_proj, word_mask
        else:
            out["image_features"] = self.encode_image(images)
            out["text_features"] = self.encode_text(ids, mask)
        return out

    def _pool_text(self, text_tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if hasattr(self.text, "body"):  # MiniLM: mean pooling
            weights = mask.unsqueeze(-1).to(text_tokens.dtype)
            pooled = (text_tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        else:
            pooled = text_tokens[:, 0]
        return self.text_projection(pooled)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        self.logit_scale.clamp_(0, self.config.max_logit_scale)
