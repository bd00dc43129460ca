"""A learnable PMC-like cohort for the demo's CFM run (plain-folder layout).

`generate_pmc_cohort(out_dir, seed, articles)` writes ``<out_dir>/folder/<pmcid>/<pmcid>.nxml``
with its PNG figures beside it. Every figure shows one synthetic "lesion" (shape: round,
triangular or square; bright or dark; in one quadrant) on a modality-like background (a grey
CT-like body section or an H&E-like pink texture), and its caption states those attributes in
varied clinical wording. Retrieval on held-out figures can therefore only beat chance by
reading the image, which the 12-record `demo` corpus cannot show.

Images differ by construction (random smooth background field, noise, size and lesion jitter)
and captions carry enough varied context that caption near-dedup keeps almost all of them.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from curate.demo.drawing import (
    blurred,
    encode,
    he_texture,
    noise,
    smooth_field,
    to_image,
    write_file,
)
from curate.demo.pmc import Article, Figure, Graphic

SHAPES = ("round", "triangular", "square")
BRIGHTNESS = ("bright", "dark")
POSITIONS = {
    "upper left": (0, 0),
    "upper right": (1, 0),
    "lower left": (0, 1),
    "lower right": (1, 1),
}
BACKGROUNDS = ("ct", "he")

# Wording pools: each caption draws one of each, so captions of the same attributes still
# share few word bigrams (caption near-dedup treats >= half shared bigrams as a copy).
MODALITY_PHRASES = {
    "ct": [
        "Axial CT image",
        "Non-contrast computed tomography",
        "Contrast-enhanced CT slice",
        "Cross-sectional CT scan",
        "Portal venous phase CT",
    ],
    "he": [
        "H&E-stained section",
        "Haematoxylin and eosin histology",
        "Photomicrograph of an H&E slide",
        "Biopsy specimen stained with H&E",
        "Histological section (H&E)",
    ],
}
VERBS = ["showing", "demonstrating", "revealing", "with", "depicting", "illustrating"]
REGION_WORDS = ["region", "quadrant", "field", "area", "portion"]
PATIENTS = [
    "in a {age}-year-old woman",
    "in a {age}-year-old man",
    "from patient {n}",
    "of case {n}",
    "at presentation in a {age}-year-old patient",
    "obtained at follow-up (patient {n})",
    "from a {age}-year-old with weight loss",
    "acquired on admission, subject {n}",
    "in a {age}-year-old smoker",
    "during screening of participant {n}",
    "in a {age}-year-old referred for staging",
    "at the {m}-month visit of patient {n}",
]
TAILS = [
    "measuring about {mm} mm",
    "approximately {mm} mm across",
    "with a diameter of {mm} mm",
    "of {mm} mm maximal extent",
    "sized {mm} mm on this view",
    "{mm} mm in its longest axis",
    "about {mm} millimetres wide",
]
CONTEXTS = [
    "No other abnormality was identified.",
    "Findings were confirmed at surgery.",
    "The remaining structures appear unremarkable.",
    "Biopsy was recommended by the multidisciplinary team.",
    "Compare with the baseline study obtained {m} months earlier.",
    "The patient reported intermittent pain for {m} weeks.",
    "Follow-up after {m} months showed stable appearances.",
    "Margins are sharp and no surrounding oedema is present.",
    "This was an incidental finding during staging.",
    "Annotations were removed for clarity.",
    "Laboratory values were within normal limits at that time.",
    "Similar features were seen in {m} further patients of the series.",
    "Treatment was started the same week.",
    "Two readers agreed on the description.",
    "Histology and imaging were reviewed together.",
    "The lesion had grown since the previous study.",
    "No calcification or fat content is seen.",
    "Clinical details are given in Table {m}.",
    "The adjacent tissue shows no infiltration.",
    "Resection margins were clear on final pathology.",
]
ARTICLE_TOPICS = [
    "Focal lesions on routine imaging",
    "Shape and density of incidental lesions",
    "A pictorial review of focal abnormalities",
    "Correlating imaging and histology of focal lesions",
    "Lesion localisation in clinical practice",
]


def _background(rng: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
    """An (h, w, 3) float array: a grey CT-like section or a pink H&E-like texture."""
    cells = int(rng.integers(3, 6))
    field = smooth_field(rng, (cells, cells), (w, h)) / 255.0
    if kind == "ct":
        yy, xx = np.mgrid[0:h, 0:w]
        body = ((xx - w / 2) / (w * 0.62)) ** 2 + ((yy - h / 2) / (h * 0.65)) ** 2 < 1.0
        grey = np.where(body, 95 + 55 * field, 15 + 20 * field)
        grey = grey + noise(rng, (h, w), 6)
        return np.repeat(grey[:, :, None], 3, axis=2)
    arr = he_texture(
        rng,
        (w, h),
        area_per_nucleus=500,
        radius=(1.5, 3.5),
        shade=(90, 150),
        green=60,
        blue_over_red=60,
        blur=0.8,
    )
    arr = arr * (0.8 + 0.35 * field[:, :, None])
    return arr + noise(rng, arr.shape, 5)


def _lesion_fill(kind: str, brightness: str, rng: np.random.Generator) -> tuple[int, int, int]:
    jitter = int(rng.integers(-12, 12))
    if kind == "ct":
        level = 245 + jitter // 2 if brightness == "bright" else 10 + abs(jitter)
        return (level, level, level)
    if brightness == "bright":
        return (252 + jitter // 4, 245 + jitter // 2, 250 + jitter // 4)
    return (70 + jitter, 10 + abs(jitter), 90 + jitter)


def render_lesion(
    rng: np.random.Generator, kind: str, shape: str, brightness: str, position: str
) -> bytes:
    """One PNG: the lesion fills 25-34% of the short side inside its quadrant."""
    w, h = int(rng.integers(96, 161)), int(rng.integers(96, 161))
    base = _background(rng, kind, w, h)
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    qx, qy = POSITIONS[position]
    extent = int(min(w, h) * rng.uniform(0.25, 0.34))
    margin = max(2, min(w, h) // 20)
    x0 = qx * (w // 2) + int(rng.integers(margin, max(margin + 1, w // 2 - extent - margin)))
    y0 = qy * (h // 2) + int(rng.integers(margin, max(margin + 1, h // 2 - extent - margin)))
    box = (x0, y0, x0 + extent, y0 + extent)
    if shape == "round":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle(box, fill=255)
    else:
        draw.polygon(
            [(x0 + extent / 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)], fill=255
        )
    alpha = blurred(mask, 0.7)[:, :, None]
    fill = np.asarray(_lesion_fill(kind, brightness, rng), dtype=np.float64)
    lesion = fill + noise(rng, base.shape, 4)
    arr = base * (1 - alpha / 255.0) + lesion * (alpha / 255.0)
    return encode(to_image(arr, "RGB"), "PNG")


def compose_caption(
    rng: np.random.Generator, kind: str, shape: str, brightness: str, position: str
) -> str:
    """Caption text stating modality, brightness, shape and position."""

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    values = {
        "age": int(rng.integers(18, 90)),
        "n": int(rng.integers(1, 400)),
        "mm": int(rng.integers(6, 48)),
        "m": int(rng.integers(2, 19)),
    }
    lesion = f"a {brightness} {shape} lesion in the {position} {pick(REGION_WORDS)}"
    # The description comes first, so a short text tower (cfm_cohort: 24 tokens) sees it;
    # the patient clause and the closing sentence vary the wording for near-dedup.
    parts = [
        pick(MODALITY_PHRASES[kind]),
        pick(VERBS),
        lesion + ",",
        pick(TAILS).format(**values),
        pick(PATIENTS).format(**values) + ".",
        pick(CONTEXTS).format(**values),
    ]
    return " ".join(parts)


def _lesion_figure(
    rng: np.random.Generator, folder: str, pmcid: str, n: int
) -> tuple[Figure, tuple[str, str, str, str]]:
    """Figure `n` of an article: draw its attributes, caption and image (in this order), write
    the PNG into `folder`; return the figure and its (background, shape, brightness, position)."""
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    brightness = BRIGHTNESS[int(rng.integers(len(BRIGHTNESS)))]
    position = list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
    caption = compose_caption(rng, kind, shape, brightness, position)
    name = f"{pmcid.lower()}-g{n:03d}.png"
    data = render_lesion(rng, kind, shape, brightness, position)
    write_file(os.path.join(folder, name), data)
    figure = Figure(
        fig_id=f"F{n}",
        label=f"Figure {n}",
        title=None,
        caption_xml=caption.replace("&", "&amp;"),
        graphics=[Graphic(href=name[:-4], file_name=name, data=data)],
        mention=f"The lesion is shown in Figure {n}.",
    )
    return figure, (kind, shape, brightness, position)


def generate_pmc_cohort(out_dir: str, seed: int = 0, articles: int = 800) -> dict[str, Any]:
    """Write `articles` CC BY 4.0 articles with 1-2 described figures each under
    `<out_dir>/folder/`; return counts of what was written.

    800 articles (~1200 figures, ~200 held out) by default: with 160 or 400 articles the
    cfm_cohort run memorises its few hundred training captions and held-out R@1 swings
    between 4x and 13x chance across seeds; with 800 it is steadily far above chance."""
    rng = np.random.default_rng(seed)
    root = os.path.join(out_dir, "folder")
    attributes: dict[str, Counter] = {
        "background": Counter(),
        "shape": Counter(),
        "brightness": Counter(),
        "position": Counter(),
    }
    figures = 0
    for index in range(articles):
        pmcid = f"PMC{9600000 + index}"
        article = Article(
            pmcid,
            str(39600000 + index),
            f"10.5555/cohort.{index}",
            f"{ARTICLE_TOPICS[index % len(ARTICLE_TOPICS)]}: case {index + 1}",
            "Demo Journal of Lesion Imaging",
            2018 + index % 8,
        )
        folder = os.path.join(root, pmcid)
        for n in range(1, int(rng.integers(1, 3)) + 1):
            figure, values = _lesion_figure(rng, folder, pmcid, n)
            article.figures.append(figure)
            figures += 1
            for key, value in zip(attributes, values, strict=True):
                attributes[key][value] += 1
        write_file(os.path.join(folder, f"{pmcid}.nxml"), article.xml())
    return {
        "seed": seed,
        "root": out_dir,
        "articles": articles,
        "figures": figures,
        "license": "CC BY 4.0",
        "attributes": {k: dict(sorted(v.items())) for k, v in attributes.items()},
    }
