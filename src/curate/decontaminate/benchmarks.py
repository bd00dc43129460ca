"""Benchmark decontamination: an index of evaluation sets, and matching training records to it.

`curate benchmark add` reads an evaluation set in its published file format, hashes its images
(perceptual hash) and keeps its question/caption texts; training records whose image is within
`image_max_hamming` bits of a benchmark image, or whose text shares `min_ngram_overlap` word
n-grams with a benchmark text, are rejected with `benchmark_leak:<name>` and the matched item.

File formats implemented (from the datasets' public releases and the loaders in their repos):

- `vqa_rad` (OSF release of VQA-RAD, Lau et al. 2018): one JSON file, a list of objects with
  `qid`, `image_name`, `question`, `answer` (+ `image_organ`, `answer_type`, ...); the images sit
  in a folder next to it (`VQA_RAD Image Folder/`). Images are found by file name anywhere
  under the given directory.
- `slake` (SLAKE 1.0, Liu et al. 2021): `train.json`, `validate.json`, `test.json`, each a list
  of objects with `qid`, `img_name` (e.g. `xmlab102/source.jpg`, relative to `imgs/`),
  `question`, `answer`, `q_lang` (`en` / `zh`).
- `pathvqa` (UCSD-AI4H/PathVQA): `qas/<split>/<split>_qa.pkl` (also accepted: the same list
  as `.json`), a list of objects with `image` (stem, e.g. `val_0261`), `question`, `answer`;
  images in `images/<split>/<image>.jpg`. Pickles are read with an unpickler that only
  builds plain containers and strings, never arbitrary objects.
- `pmc_vqa` (xiaoman-zhang/PMC-VQA): CSV files (`train.csv`, `test.csv`, ...) with
  `Figure_path`, `Question`, `Answer`, `Choice A`..`Choice D` (and `Caption` in some
  releases); images in `images/` or `figures/` by file name.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.decontaminate.config import DecontamConfig
from curate.dedup.imagehash import hash_blocks, image_hash
from curate.dedup.minhash import word_tokens
from curate.errors import InputError, MalformedMetadata, MissingFile, SpecError
from curate.stages import Record, Rejected, Stage

LEAK_PREFIX = "benchmark_leak:"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm"}


@dataclass(frozen=True)
class BenchmarkItem:
    item_id: str
    image_file: str | None
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Leak:
    """A training record that matches a benchmark item."""

    record_id: str
    benchmark: str
    item_id: str
    kind: str  # image | text
    detail: str

    @property
    def reason(self) -> str:
        return f"{LEAK_PREFIX}{self.benchmark}"

    def as_row(self) -> dict[str, str]:
        return {
            "record_id": self.record_id,
            "benchmark": self.benchmark,
            "item_id": self.item_id,
            "kind": self.kind,
            "detail": self.detail,
            "reason": self.reason,
        }


# ---- loaders ------------------------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedMetadata(f"{path}: not valid JSON ({exc})") from exc


class _PlainUnpickler(pickle.Unpickler):
    """Pickle benchmark files hold lists of dicts of strings; refuse anything that needs a class."""

    def find_class(self, module: str, name: str):
        raise MalformedMetadata(f"pickle wants {module}.{name}; only plain containers are allowed")


def _read_pickle(path: Path):
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


def _rows(data, path: Path) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MalformedMetadata(f"{path}: expected a list of objects")
    return data


def _text(value) -> str:
    return str(value).strip() if value not in (None, "") else ""


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
            name = _text(row.get("image_name"))
            image = images.get(name)
            yield BenchmarkItem(
                f"{path.stem}:{row.get('qid', i)}",
                str(image) if image else None,
                tuple(t for t in (_text(row.get("question")),) if t),
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
                tuple(t for t in (_text(row.get("question")),) if t),
            )


def load_pathvqa(root: Path) -> Iterator[BenchmarkItem]:
    files = sorted(root.rglob("*_qa.pkl")) + sorted(root.rglob("*_qa.json"))
    if not files:
        raise MissingFile(f"{root}: no qas/<split>/<split>_qa.pkl (PathVQA format)")
    images = _image_index(root)
    for path in files:
        data = _read_pickle(path) if path.suffix == ".pkl" else _read_json(path)
        for i, row in enumerate(_rows(data, path)):
            stem = _text(row.get("image"))
            image = images.get(stem) or images.get(f"{stem}.jpg")
            yield BenchmarkItem(
                f"{path.stem}:{i}",
                str(image) if image else None,
                tuple(t for t in (_text(row.get("question")),) if t),
            )


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
                texts = tuple(
                    t for t in (_text(row.get("Question")), _text(row.get("Caption"))) if t
                )
                yield BenchmarkItem(f"{path.stem}:{i}", str(image) if image else None, texts)
    if not found:
        raise MalformedMetadata(f"{root}: no CSV with a `Figure_path` column (PMC-VQA format)")


LOADERS = {
    "vqa_rad": load_vqa_rad,
    "slake": load_slake,
    "pathvqa": load_pathvqa,
    "pmc_vqa": load_pmc_vqa,
}


# ---- the index ------------------------------------------------------------------------------------

INDEX_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("image_file", pa.string()),
        pa.field("image_hash", pa.uint64()),
        pa.field("texts", pa.list_(pa.string())),
    ]
)


def build_benchmark(
    name: str,
    fmt: str,
    path: str | Path,
    index_dir: str | Path,
    config: DecontamConfig | None = None,
) -> dict:
    """Read a benchmark in format `fmt` from `path` and write `index_dir/<name>.parquet`."""
    config = config or DecontamConfig()
    if fmt not in LOADERS:
        raise SpecError(f"unknown benchmark format {fmt!r}; known: {sorted(LOADERS)}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"benchmark name {name!r}: use letters, digits, '_' and '-'")
    root = Path(path)
    if not root.is_dir():
        raise MissingFile(f"benchmark folder {root} does not exist")
    rows: dict[str, list] = {"item_id": [], "image_file": [], "image_hash": [], "texts": []}
    hashes: dict[str, int | None] = {}
    unreadable = 0
    for item in LOADERS[fmt](root):
        value = None
        if item.image_file:
            if item.image_file not in hashes:
                try:
                    hashes[item.image_file] = image_hash(
                        Path(item.image_file).read_bytes(), config.image_hash
                    )
                except InputError:
                    hashes[item.image_file] = None
                    unreadable += 1
            value = hashes[item.image_file]
        rows["item_id"].append(item.item_id)
        rows["image_file"].append(item.image_file)
        rows["image_hash"].append(value)
        rows["texts"].append(list(item.texts))
    table = pa.table(rows, schema=INDEX_SCHEMA).replace_schema_metadata(
        {
            "curate.benchmark.name": name,
            "curate.benchmark.format": fmt,
            "curate.benchmark.source": str(root),
            "curate.benchmark.image_hash": config.image_hash,
        }
    )
    out = Path(index_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(out / f"{name}.parquet")
    summary = {
        "name": name,
        "format": fmt,
        "source": str(root),
        "items": table.num_rows,
        "images": sum(1 for v in hashes.values() if v is not None),
        "unreadable_images": unreadable,
        "missing_images": sum(1 for f in rows["image_file"] if f is None),
        "texts": sum(len(t) for t in rows["texts"]),
        "image_hash": config.image_hash,
    }
    manifest = out / "index.json"
    listing = json.loads(manifest.read_text()) if manifest.is_file() else {}
    listing[name] = summary
    manifest.write_text(json.dumps(listing, indent=2, sort_keys=True))
    return summary


def _ngram_keys(tokens: list[bytes], n: int) -> set[bytes]:
    return {b" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class BenchmarkIndex:
    """All benchmarks of an index folder, ready to match training records."""

    def __init__(self, config: DecontamConfig) -> None:
        self.config = config
        self.image_buckets: dict[tuple[int, int], list[tuple[int, str, str]]] = defaultdict(list)
        # n-gram (or whole short text) -> (benchmark, item_id); grouped by n-gram length.
        self.grams: dict[int, dict[bytes, list[tuple[str, str]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.names: list[str] = []

    @classmethod
    def load(cls, index_dir: str | Path, config: DecontamConfig) -> BenchmarkIndex:
        root = Path(index_dir)
        files = sorted(root.glob("*.parquet"))
        if not files:
            raise MissingFile(
                f"benchmark index {root} holds no benchmarks (run `curate benchmark add`)"
            )
        index = cls(config)
        for path in files:
            table = pq.read_table(path)
            meta = table.schema.metadata or {}
            method = meta.get(b"curate.benchmark.image_hash", b"phash").decode()
            if method != config.image_hash:
                raise SpecError(
                    f"{path}: images hashed with {method}, config says {config.image_hash}"
                )
            index.add(path.stem, table.to_pylist())
        return index

    def add(self, name: str, rows: Iterable[dict]) -> None:
        self.names.append(name)
        n = self.config.ngram
        for row in rows:
            value = row.get("image_hash")
            if value is not None:
                for key in hash_blocks(int(value), self.config.image_max_hamming + 1):
                    self.image_buckets[key].append((int(value), name, row["item_id"]))
            for text in row.get("texts") or []:
                tokens = word_tokens(text)
                if len(tokens) < self.config.short_text_min_tokens:
                    continue  # "is this normal?" says nothing about a leak
                width = min(n, len(tokens))
                for gram in _ngram_keys(tokens, width):
                    self.grams[width][gram].append((name, row["item_id"]))

    def match_image(self, value: int) -> list[tuple[str, str, int]]:
        hits: dict[tuple[str, str], int] = {}
        for key in hash_blocks(value, self.config.image_max_hamming + 1):
            for other, name, item in self.image_buckets.get(key, ()):
                distance = (value ^ other).bit_count()
                if distance <= self.config.image_max_hamming:
                    hits[(name, item)] = min(distance, hits.get((name, item), 64))
        return sorted((name, item, d) for (name, item), d in hits.items())

    def match_text(self, text: str) -> list[tuple[str, str, int]]:
        """(benchmark, item, shared n-grams) for items this text leaks.

        A benchmark text shorter than `ngram` tokens is indexed whole; containing it is a leak.
        Longer ones need `min_ngram_overlap` shared n-grams (GPT-3's decontamination used 13).
        """
        tokens = word_tokens(text)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        whole: set[tuple[str, str]] = set()
        n = self.config.ngram
        for width, table in self.grams.items():
            if len(tokens) < width:
                continue
            for gram in _ngram_keys(tokens, width):
                for hit in table.get(gram, ()):
                    counts[hit] += 1
                    if width < n:
                        whole.add(hit)
        need = self.config.min_ngram_overlap
        return sorted(
            (name, item, c)
            for (name, item), c in counts.items()
            if c >= need or (name, item) in whole
        )

    def match(self, record: Record, image_hash_value: int | None = None) -> list[Leak]:
        """Every benchmark item the record matches, image matches first."""
        rid = str(record.get("record_id"))
        leaks: list[Leak] = []
        if image_hash_value is None and record.get("image"):
            try:
                image_hash_value = image_hash(record["image"], self.config.image_hash)
            except InputError:
                image_hash_value = None
        if image_hash_value is not None:
            for name, item, distance in self.match_image(image_hash_value):
                leaks.append(Leak(rid, name, item, "image", f"hamming={distance}"))
        for field in self.config.text_fields:
            text = record.get(field)
            if isinstance(text, str) and text.strip():
                for name, item, count in self.match_text(text):
                    leaks.append(Leak(rid, name, item, "text", f"{field}: {count} shared n-grams"))
        return leaks


def first_leak(leaks: list[Leak]) -> Leak | None:
    """The leak that names the rejection: image evidence first, then benchmark and item order."""
    if not leaks:
        return None
    return sorted(leaks, key=lambda leak: (leak.kind != "image", leak.benchmark, leak.item_id))[0]


def find_leaks(records: Iterable[Record], index: BenchmarkIndex) -> list[Leak]:
    out: list[Leak] = []
    for record in records:
        out.extend(index.match(record))
    return out


class DecontamStage(Stage):
    """Per-record stage: a record that leaks a benchmark item is `Rejected` with
    `benchmark_leak:<name>` and `duplicate_of="<name>:<item_id>"`; the index loads in `setup`."""

    name = "decontam"

    def __init__(self, config: DecontamConfig) -> None:
        if not config.index:
            raise SpecError("decontamination needs an `index` folder")
        self.config = config
        self.index: BenchmarkIndex | None = None
        self.leaks: list[Leak] = []  # every match, for the manifest

    def setup(self) -> None:
        self.index = BenchmarkIndex.load(str(self.config.index), self.config)

    def process(self, record: Record) -> Iterator[Record | Rejected]:
        if self.index is None:
            self.setup()
        assert self.index is not None
        leaks = self.index.match(record)
        chosen = first_leak(leaks)
        if chosen is None:
            yield record
            return
        self.leaks.extend(leaks)
        yield Rejected(
            record=record,
            reason=chosen.reason,
            stage=self.name,
            duplicate_of=f"{chosen.benchmark}:{chosen.item_id}",
        )
