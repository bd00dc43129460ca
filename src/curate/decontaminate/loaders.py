"""Benchmark loaders: each evaluation set in the file formats it is released in.

Every loader yields `BenchmarkItem`s: an id, the item's image (a file, or bytes when the release
embeds them), its question (or caption) texts and its answer. Formats (from the datasets'
public releases and the loaders in their repos):

- `vqa_rad` (OSF release of VQA-RAD, Lau et al. 2018): one JSON file, a list of objects with
  `qid`, `image_name`, `question`, `answer` (+ `image_organ`, `answer_type`, ...); the images sit
  in a folder next to it (`VQA_RAD Image Folder/`), found by file name anywhere under the root.
- `slake` (SLAKE 1.0, Liu et al. 2021): `train.json`, `validate.json`, `test.json`, each a list
  of objects with `qid`, `img_name` (e.g. `xmlab102/source.jpg`, relative to `imgs/`),
  `question`, `answer`, `q_lang` (`en` / `zh`).
- `pathvqa` (UCSD-AI4H/PathVQA), any of its releases under the root:
  `qas/<split>/<split>_qa.pkl` or `.json` (objects with `image`, `question`, `answer`); the
  LXMERT-style JSON or pickle (objects with `img_id`, `sent`, `label: {answer: score}`, e.g.
  `train_vqa.pkl`, `pvqa_test.json`); the Hugging Face parquet (`image` as {bytes, path},
  `question`, `answer`). Images in `images/<split>/<image>.jpg`. Pickles are read with an
  unpickler that only builds plain containers and strings, never arbitrary objects.
- `pmc_vqa` (xiaoman-zhang/PMC-VQA): CSV files (`train.csv`, `test.csv`, ...) with
  `Figure_path`, `Question`, `Answer`, `Choice A`..`Choice D` (and `Caption` in some
  releases); images in `images/` or `figures/` by file name.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curate.errors import MalformedMetadata, MissingFile

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm"}


@dataclass(frozen=True)
class BenchmarkItem:
    item_id: str
    image_file: str | None
    texts: tuple[str, ...]
    answer: str = ""
    image_bytes: bytes | None = None  # releases that embed the image (HF parquet)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedMetadata(f"{path}: not valid JSON ({exc})") from exc


class _PlainUnpickler(pickle.Unpickler):
    """Pickle benchmark files hold lists of dicts of strings; refuse anything that needs a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise MalformedMetadata(f"pickle wants {module}.{name}; only plain containers are allowed")


def _read_pickle(path: Path) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except MalformedMetadata:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is malformed input
        raise MalformedMetadata(f"{path}: unreadable pickle ({exc})") from exc


def _image_index(root: Path) -> dict[str, Path]:
    """file name and stem -> path, for every image under `root` (first in sorted order wins)."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            index.setdefault(path.name, path)
            index.setdefault(path.stem, path)
    return index


def _rows(data: Any, path: Path) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MalformedMetadata(f"{path}: expected a list of objects")
    return data


def _text(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def _texts(*values: Any) -> tuple[str, ...]:
    return tuple(t for t in (_text(v) for v in values) if t)


def load_vqa_rad(root: Path) -> Iterator[BenchmarkItem]:
    files = sorted(p for p in root.rglob("*.json"))
    if not files:
        raise MissingFile(f"{root}: no VQA-RAD JSON file")
    images = _image_index(root)
    found = False
    for path in files:
        data = _read_json(path)
        if not (
            isinstance(data, list)
            and data
            and isinstance(data[0], dict)
            and "image_name" in data[0]
        ):
            continue
        found = True
        for i, row in enumerate(_rows(data, path)):
            image = images.get(_text(row.get("image_name")))
            yield BenchmarkItem(
                f"{path.stem}:{row.get('qid', i)}",
                str(image) if image else None,
                _texts(row.get("question")),
                _text(row.get("answer")),
            )
    if not found:
        raise MalformedMetadata(f"{root}: no JSON list with `image_name` (VQA-RAD format)")


def load_slake(root: Path) -> Iterator[BenchmarkItem]:
    splits = [root / f"{s}.json" for s in ("train", "validate", "test")]
    present = [p for p in splits if p.is_file()]
    if not present:
        raise MissingFile(f"{root}: none of train.json / validate.json / test.json (SLAKE format)")
    images_root = root / "imgs"
    for path in present:
        for i, row in enumerate(_rows(_read_json(path), path)):
            name = _text(row.get("img_name"))
            image = images_root / name if name else None
            yield BenchmarkItem(
                f"{path.stem}:{row.get('qid', i)}",
                str(image) if image is not None and image.is_file() else None,
                _texts(row.get("question")),
                _text(row.get("answer")),
            )


def _lxmert_answer(label: Any) -> str:
    """The best-scored answer of an LXMERT `label` ({answer: score}); a plain string as is."""
    if isinstance(label, dict) and label:
        return _text(max(label.items(), key=lambda kv: (float(kv[1] or 0), str(kv[0])))[0])
    return _text(label)


def _pathvqa_rows(path: Path, rows: list[dict], images: dict[str, Path]) -> Iterator[BenchmarkItem]:
    for i, row in enumerate(rows):
        if "sent" in row or "img_id" in row:  # LXMERT style
            stem, question = _text(row.get("img_id")), row.get("sent")
            answer = _lxmert_answer(row.get("label"))
            item = f"{path.stem}:{row.get('question_id', i)}"
        else:
            stem, question = _text(row.get("image")), row.get("question")
            answer, item = _text(row.get("answer")), f"{path.stem}:{i}"
        image = images.get(stem) or images.get(f"{stem}.jpg")
        yield BenchmarkItem(item, str(image) if image else None, _texts(question), answer)


def _pathvqa_parquet(path: Path) -> Iterator[BenchmarkItem]:
    """The Hugging Face release: `image` ({bytes, path}), `question`, `answer` columns."""
    table = pq.read_table(path)
    missing = {"question", "answer"} - set(table.column_names)
    if missing:
        raise MalformedMetadata(f"{path}: no {sorted(missing)} column (PathVQA parquet)")
    for i, row in enumerate(table.to_pylist()):
        image = row.get("image")
        data = image.get("bytes") if isinstance(image, dict) else image
        yield BenchmarkItem(
            f"{path.stem}:{i}",
            None,
            _texts(row.get("question")),
            _text(row.get("answer")),
            data if isinstance(data, bytes) and data else None,
        )


def _is_pathvqa_list(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and isinstance(data[0], dict)
        and ("question" in data[0] or "sent" in data[0])
    )


def load_pathvqa(root: Path) -> Iterator[BenchmarkItem]:
    files = sorted(root.rglob("*.pkl")) + sorted(root.rglob("*.json"))
    tables = sorted(root.rglob("*.parquet"))
    if not files and not tables:
        raise MissingFile(f"{root}: no PathVQA qas pickle/JSON, LXMERT JSON or parquet")
    images = _image_index(root)
    found = False
    for path in files:
        data = _read_pickle(path) if path.suffix == ".pkl" else _read_json(path)
        if not _is_pathvqa_list(data):
            continue  # e.g. an answer-label map (trainval_ans2label.pkl)
        found = True
        yield from _pathvqa_rows(path, _rows(data, path), images)
    for path in tables:
        found = True
        yield from _pathvqa_parquet(path)
    if not found:
        raise MalformedMetadata(f"{root}: no list of questions in any PathVQA release format")


def load_pmc_vqa(root: Path) -> Iterator[BenchmarkItem]:
    files = sorted(root.rglob("*.csv"))
    if not files:
        raise MissingFile(f"{root}: no CSV file (PMC-VQA format)")
    images = _image_index(root)
    found = False
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "Figure_path" not in reader.fieldnames:
                continue
            found = True
            for i, row in enumerate(reader):
                figure = _text(row.get("Figure_path"))
                image = images.get(Path(figure).name) if figure else None
                yield BenchmarkItem(
                    f"{path.stem}:{i}",
                    str(image) if image else None,
                    _texts(row.get("Question"), row.get("Caption")),
                    _text(row.get("Answer")),
                )
    if not found:
        raise MalformedMetadata(f"{root}: no CSV with a `Figure_path` column (PMC-VQA format)")


LOADERS = {
    "vqa_rad": load_vqa_rad,
    "slake": load_slake,
    "pathvqa": load_pathvqa,
    "pmc_vqa": load_pmc_vqa,
}

__all__ = ["IMAGE_SUFFIXES", "LOADERS", "BenchmarkItem"]
