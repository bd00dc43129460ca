"""Image side: decoding shard bytes into tensors, and the image towers.

Decoding is Pillow from bytes, converted to RGB (grayscale medical images become three equal
channels), resized and cropped as open_clip does (aspect kept, centre crop; a seeded random
resized crop in training when configured) and normalised with the config's mean/std.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from curate.errors import SpecError, UnreadableImage
from curate.train.config import VisionConfig


class ImagePreprocess:
    """bytes -> float tensor (3, size, size), as open_clip prepares images. Picklable, so
    DataLoader workers can run it.

    Evaluation (and training without `crop_scale`): `shortest` resizes the shorter side to
    `size` (bicubic, aspect kept) and centre-crops; `squash` stretches to a square. Training
    with `crop_scale`: torchvision's RandomResizedCrop (area in `crop_scale`, aspect ratio
    log-uniform in `crop_ratio`, 10 tries then a centre crop) drawn from a generator seeded by
    the row's sample seed, so a resumed run crops exactly as the uninterrupted one did.
    """

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        resize: str = "shortest",
        crop_scale: tuple[float, float] | None = None,
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.size = size
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.resize, self.crop_scale, self.crop_ratio = resize, crop_scale, crop_ratio

    @classmethod
    def from_config(cls, config: VisionConfig, train: bool = False) -> ImagePreprocess:
        return cls(
            config.image_size,
            config.mean,
            config.std,
            resize=config.resize,
            crop_scale=config.train_crop_scale if train else None,
            crop_ratio=config.train_crop_ratio,
        )

    def __call__(self, data: bytes | Image.Image, seed: int | None = None) -> torch.Tensor:
        if isinstance(data, Image.Image):
            image = data
        else:
            if not data:
                raise UnreadableImage("empty image bytes")
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception as exc:  # Pillow raises many types for bad bytes
                raise UnreadableImage(f"cannot decode image: {exc}") from exc
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            # 16-bit / float medical images: rescale to 8 bit before RGB conversion.
            array = np.asarray(image, dtype=np.float32)
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) * 255.0 if high > low else array * 0.0
            image = Image.fromarray(array.astype(np.uint8))
        image = self._geometry(image.convert("RGB"), seed)
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((array - self.mean) / self.std)

    def _geometry(self, image: Image.Image, seed: int | None) -> Image.Image:
        size = (self.size, self.size)
        if self.crop_scale is not None and seed is not None:
            box = random_resized_box(image.size, self.crop_scale, self.crop_ratio, seed)
            return image.resize(size, Image.Resampling.BICUBIC, box=box)
        if image.size == size:
            return image
        if self.resize == "squash":
            return image.resize(size, Image.Resampling.BICUBIC)
        width, height = image.size
        scale = self.size / min(width, height)
        resized = (max(self.size, round(width * scale)), max(self.size, round(height * scale)))
        image = image.resize(resized, Image.Resampling.BICUBIC)
        left = (resized[0] - self.size) // 2
        top = (resized[1] - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))


def random_resized_box(
    image_size: tuple[int, int], scale: tuple[float, float], ratio: tuple[float, float], seed: int
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's RandomResizedCrop, from a seeded generator."""
    width, height = image_size
    area = width * height
    rng = np.random.default_rng(seed)
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    # Fallback: the largest centre crop within the ratio range (as torchvision does).
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class Block(nn.Module):
    """Pre-norm transformer block (CLIP/ViT style); `mask` is an additive attention mask."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.ln_1(x)
        x = (
            x
            + self.attn(
                h, h, h, key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=False
            )[0]
        )
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """A small ViT: patch embedding, class token, learned positions, pre-norm blocks.

    `forward` returns the pooled (class-token) feature; `forward_tokens` also returns the
    hidden states of every layer so callers (local loss, the MLLM) can pick patch tokens.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        if config.image_size % config.patch_size:
            raise SpecError(
                f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}"
            )
        self.width = config.width
        grid = config.image_size // config.patch_size
        self.num_patches = grid * grid
        self.conv1 = nn.Conv2d(3, config.width, config.patch_size, config.patch_size, bias=False)
        scale = config.width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(config.width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(self.num_patches + 1, config.width)
        )
        self.ln_pre = nn.LayerNorm(config.width)
        self.blocks = nn.ModuleList(
            Block(config.width, config.heads, config.mlp_ratio, config.dropout)
            for _ in range(config.layers)
        )
        self.ln_post = nn.LayerNorm(config.width)

    def forward_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, P, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        hidden = [x]
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        x = self.ln_post(x)
        hidden[-1] = x
        return x, hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(images)[0][:, 0]


class ModuleTower(nn.Module):
    """Wraps any torch vision module built from an import path. Token outputs (B, T, W) are
    mean-pooled for the global feature."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        if not config.module or ":" not in config.module:
            raise SpecError("vision.kind 'module' needs module='package.module:factory'")
        module_name, attr = config.module.split(":", 1)
        factory: Callable[..., nn.Module] = getattr(importlib.import_module(module_name), attr)
        self.body = factory(**config.kwargs)
        with torch.no_grad():
            probe = self.body(torch.zeros(1, 3, config.image_size, config.image_size))
        self.width = probe.shape[-1]
        self.num_patches = probe.shape[1] - 1 if probe.dim() == 3 else 0

    def forward_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.body(images)
        if out.dim() == 2:
            out = out[:, None]
        return out, [out]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.body(images)
        return out if out.dim() == 2 else out.mean(dim=1)


class HFVisionTower(nn.Module):
    """A local Hugging Face vision model (e.g. a CLIP/SigLIP/ViT vision encoder directory)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if not config.path:
            raise SpecError("vision.kind 'hf' needs `path` to a local model directory")
        hf_config = AutoConfig.from_pretrained(config.path, local_files_only=True)
        if hasattr(hf_config, "vision_config"):
            from transformers import CLIPVisionModel

            self.body = CLIPVisionModel.from_pretrained(config.path, local_files_only=True)
        else:
            self.body = AutoModel.from_pretrained(config.path, local_files_only=True)
        self.width = self.body.config.hidden_size
        self.num_patches = 0

    def forward_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.body(pixel_values=images, output_hidden_states=True)
        return out.last_hidden_state, list(out.hidden_states)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.body(pixel_values=images)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]


def build_vision_tower(config: VisionConfig) -> nn.Module:
    if config.kind == "vit":
        return VisionTransformer(config)
    if config.kind == "module":
        return ModuleTower(config)
    return HFVisionTower(config)
