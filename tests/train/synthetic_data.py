"""A learnable synthetic dataset written as real shards (explicit record schemas, pyarrow).

Each 32x32 PNG shows one coloured shape (circle, square, triangle) in one quadrant over
noise; the caption says which ("a red circle in the upper left"), so retrieval can only
succeed by reading the image. Instruction rows ask yes/no, choice and open questions whose
answers depend on the image (half the yes/no questions name a wrong colour or position).
Instruction rows reference their image by `image_sha256`, as a build writes them by default
(`instruct.include_image: false`); `embed_images=True` copies the bytes instead.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from curate.schema import load_schema

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = {
    "upper left": (0, 0),
    "upper right": (1, 0),
    "lower left": (0, 1),
    "lower right": (1, 1),
}


def render(
    colour: str, shape: str, position: str, rng: np.random.Generator, size: int = 32
) -> bytes:
    noise = rng.integers(0, 70, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(noise, "RGB")
    draw = ImageDraw.Draw(image)
    half = size // 2
    qx, qy = POSITIONS[position]
    extent = int(rng.integers(9, 13))
    x0 = qx * half + int(rng.integers(1, half - extent))
    y0 = qy * half + int(rng.integers(1, half - extent))
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon(
            [(x0 + extent / 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)], fill=fill
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def figure_rows(count: int, split: str, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        position = list(POSITIONS)[rng.integers(len(POSITIONS))]
        image = render(colour, shape, position, rng)
        pmcid = f"PMC{9000000 + seed * 100000 + index}"
        rows.append(
            {
                "record_id": f"{pmcid}/F1/0",
                "unit_id": pmcid,
                "source_uri": f"synthetic://{pmcid}",
                "source_layout": "folder",
                "pmcid": pmcid,
                "license_family": "commercial",
                "caption": f"a {colour} {shape} in the {position}",
                "inline_mentions": [f"figure 1 shows the {shape}"],
                "graphic_index": 0,
                "graphic_count": 1,
                "image": image,
                "image_sha256": hashlib.sha256(image).hexdigest(),
                "image_format": "PNG",
                "image_width": 32,
                "image_height": 32,
                # Synthetic stand-in for a labelled column: zero-shot classifies the shape.
                "modality": shape,
                "split": split,
                "_attrs": (colour, shape, position),
            }
        )
    return rows


def instruction_rows(figures: list[dict], seed: int, embed_images: bool = False) -> list[dict]:
    """Four questions per image: two yes/no about the position, a colour choice and an open
    question about the shape. Each answer is a function of the image alone, so a model that
    ignores the image can do no better than the majority answer."""
    rng = np.random.default_rng(seed + 7)
    rows = []
    for figure in figures:
        colour, shape, position = figure["_attrs"]
        options = list(COLOURS)
        rng.shuffle(options)
        upper = position.startswith("upper")
        left = position.endswith("left")
        samples = [
            (
                "synthetic.upper_yes_no",
                "closed",
                "is the shape in the upper half ?",
                "yes" if upper else "no",
                [],
            ),
            (
                "synthetic.left_yes_no",
                "closed",
                "is the shape on the left side ?",
                "yes" if left else "no",
                [],
            ),
            (
                "synthetic.colour_choice",
                "choice",
                "what colour is the shape ? options : " + " , ".join(options),
                colour,
                options,
            ),
            ("synthetic.shape_open", "open", "what shape is shown ?", shape, []),
        ]
        for index, (task, answer_type, question, answer, opts) in enumerate(samples):
            rows.append(
                {
                    "record_id": f"{figure['record_id']}#{task}.{index}",
                    "source_record_id": figure["record_id"],
                    "split": figure["split"],
                    "image": figure["image"] if embed_images else None,
                    "image_sha256": figure["image_sha256"],
                    "image_format": "PNG",
                    "task_family": "qa",
                    "task": task,
                    "conversations": [
                        {"from": "human", "value": question},
                        {"from": "gpt", "value": answer},
                    ],
                    "answer_type": answer_type,
                    "options": opts,
                    "answer": answer,
                    "generator": "templated",
                    "source_schema": "figure_caption.v1",
                    "verification_flags": [],
                }
            )
    return rows


def _write(rows: list[dict], schema_ref: str, path: Path, row_group_rows: int) -> None:
    schema = load_schema(schema_ref).arrow
    clean = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(clean, schema=schema),
        path,
        compression="zstd",
        row_group_size=row_group_rows,
    )


def write_synthetic_shards(
    out_dir: str | Path,
    train: int = 2000,
    validation: int = 300,
    test: int = 0,
    instructions: bool = True,
    row_group_rows: int = 128,
    embed_images: bool = False,
) -> Path:
    """Write OUT/shards/<split>/ (figure_caption.v1) and OUT/instructions/<split>/
    (instruction.v1) for the requested split sizes; returns OUT."""
    out = Path(out_dir)
    for seed, (split, count) in enumerate(
        [("train", train), ("validation", validation), ("test", test)]
    ):
        if not count:
            continue
        figures = figure_rows(count, split, seed)
        _write(
            figures,
            "figure_caption.v1",
            out / "shards" / split / "part-00000.parquet",
            row_group_rows,
        )
        if instructions:
            _write(
                instruction_rows(figures, seed, embed_images),
                "instruction.v1",
                out / "instructions" / split / "part-00000.parquet",
                row_group_rows,
            )
    return out
