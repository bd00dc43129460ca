"""A generated corpus with planted near-duplicates, for measuring dedup (and for demos).

Originals are figure-like images (smooth fields like photographs or histology, and white
charts with bars and lines) with captions drawn from a radiology/pathology vocabulary. Each
planted copy records its `base` (the original's id) and `variant`:

- `reencoded`: JPEG at quality 25-50;  `resized`: 40-80% of the size;
- `cropped`: 4-8% cut from the borders;  `brightness`: +/-15-25% brightness;
- `reworded`: the caption with ~15% of words replaced or dropped (a new, unrelated image).

Image copies get a fresh, unrelated caption, and caption copies a fresh image, so each method
is measured on its own evidence.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from curate.demo.drawing import bar_chart, encode, photo_like

IMAGE_VARIANTS = ("reencoded", "resized", "cropped", "brightness")
TEXT_VARIANTS = ("reworded",)

_WORDS = [
    "axial",
    "coronal",
    "sagittal",
    "contrast",
    "enhanced",
    "computed",
    "tomography",
    "magnetic",
    "resonance",
    "image",
    "shows",
    "a",
    "large",
    "small",
    "well",
    "defined",
    "ill",
    "defined",
    "hypodense",
    "hyperdense",
    "hyperintense",
    "lesion",
    "mass",
    "nodule",
    "cyst",
    "in",
    "the",
    "left",
    "right",
    "upper",
    "lower",
    "lobe",
    "of",
    "lung",
    "liver",
    "kidney",
    "spleen",
    "pancreas",
    "brain",
    "with",
    "surrounding",
    "edema",
    "effusion",
    "calcification",
    "necrosis",
    "haemorrhage",
    "arrow",
    "indicates",
    "arrowhead",
    "marks",
    "margin",
    "wall",
    "thickening",
    "stenosis",
    "dilatation",
    "histopathology",
    "section",
    "stained",
    "with",
    "hematoxylin",
    "eosin",
    "showing",
    "infiltration",
    "of",
    "lymphocytes",
    "neutrophils",
    "atypical",
    "cells",
    "fibrosis",
    "at",
    "magnification",
    "scale",
    "bar",
    "patient",
    "year",
    "old",
    "male",
    "female",
    "before",
    "after",
    "treatment",
    "follow",
    "up",
]
_SYNONYMS = {
    "shows": "demonstrates",
    "large": "big",
    "small": "tiny",
    "lesion": "abnormality",
    "mass": "tumour",
    "left": "sinistral",
    "arrow": "pointer",
    "image": "scan",
    "showing": "revealing",
    "indicates": "marks",
    "patient": "subject",
    "surrounding": "adjacent",
}


@dataclass
class Planted:
    record: dict
    base: str | None  # the original's id, None for originals
    variant: str  # original | reencoded | ... | reworded


def _encode(image: Image.Image, quality: int = 92) -> bytes:
    """JPEG bytes; originals and most copies at quality 92 (the set's photographic default)."""
    return encode(image, "JPEG", quality)


def _caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(_WORDS, size=int(rng.integers(14, 30))).tolist()) + "."


def _reword(rng: np.random.Generator, caption: str) -> str:
    words = caption.rstrip(".").split()
    out = []
    for word in words:
        roll = rng.random()
        if word in _SYNONYMS and roll < 0.5:
            out.append(_SYNONYMS[word])
        elif roll < 0.04:
            continue  # dropped word
        else:
            out.append(word)
    return " ".join(out) + "."


def _variant(rng: np.random.Generator, image: Image.Image, kind: str) -> bytes:
    w, h = image.size
    if kind == "reencoded":
        return _encode(image, int(rng.integers(25, 51)))
    if kind == "resized":
        scale = float(rng.uniform(0.4, 0.8))
        return _encode(
            image.resize((max(8, int(w * scale)), max(8, int(h * scale))), Image.Resampling.LANCZOS)
        )
    if kind == "cropped":
        f = float(rng.uniform(0.04, 0.08))
        box = (
            int(w * f * rng.random()),
            int(h * f * rng.random()),
            w - int(w * f * rng.random()),
            h - int(h * f * rng.random()),
        )
        return _encode(image.crop(box))
    if kind == "brightness":
        factor = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.25) + 1)
        return _encode(ImageEnhance.Brightness(image).enhance(factor))
    raise ValueError(kind)


def _record(rid: str, data: bytes, caption: str) -> dict:
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
    return {
        "record_id": rid,
        "image": data,
        "image_width": w,
        "image_height": h,
        "caption": caption,
        "pmcid": f"PMC{abs(hash(rid)) % 10_000_000}",
    }


def generate(
    n_originals: int = 100,
    copies_per_variant: int = 20,
    seed: int = 0,
    variants: Iterable[str] = IMAGE_VARIANTS + TEXT_VARIANTS,
) -> list[Planted]:
    """Originals plus `copies_per_variant` planted copies of each variant (of distinct originals)."""
    rng = np.random.default_rng(seed)
    planted: list[Planted] = []
    originals: list[tuple[str, Image.Image, str]] = []
    for i in range(n_originals):
        size = (int(rng.integers(240, 480)), int(rng.integers(200, 400)))
        image = photo_like(rng, size) if i % 2 == 0 else bar_chart(rng, size)
        caption = _caption(rng)
        rid = f"orig-{i:04d}"
        originals.append((rid, image, caption))
        planted.append(Planted(_record(rid, _encode(image), caption), None, "original"))
    for kind in variants:
        chosen = rng.choice(n_originals, size=min(copies_per_variant, n_originals), replace=False)
        for j, idx in enumerate(sorted(chosen.tolist())):
            base_id, image, caption = originals[idx]
            rid = f"{kind}-{j:04d}"
            if kind in TEXT_VARIANTS:
                fresh = (
                    photo_like(rng, image.size)
                    if rng.random() < 0.5
                    else bar_chart(rng, image.size)
                )
                record = _record(rid, _encode(fresh), _reword(rng, caption))
            else:
                record = _record(rid, _variant(rng, image, kind), _caption(rng))
            planted.append(Planted(record, base_id, kind))
    return planted


def score(
    planted: list[Planted], decisions: Iterable[tuple[str, str, str]]
) -> dict[str, dict[str, float]]:
    """Precision of the drops and recall per variant.

    A copy counts as found when it ends in the same duplicate group as its original; a drop is
    correct when the dropped record and the kept one come from the same original.
    """
    base_of = {p.record["record_id"]: (p.base or p.record["record_id"]) for p in planted}
    group = {p.record["record_id"]: p.record["record_id"] for p in planted}
    drops = list(decisions)
    for rid, _, kept in drops:
        group[rid] = kept
    correct = sum(1 for rid, _, kept in drops if base_of[rid] == base_of.get(kept))
    result: dict[str, dict[str, float]] = {
        "all": {"drops": len(drops), "precision": correct / len(drops) if drops else 1.0}
    }
    for kind in sorted({p.variant for p in planted} - {"original"}):
        copies = [p for p in planted if p.variant == kind]
        found = sum(1 for p in copies if group[p.record["record_id"]] == group[p.base])
        result[kind] = {"copies": len(copies), "recall": found / len(copies) if copies else 0.0}
    return result
