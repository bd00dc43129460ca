"""Benchmark decontamination: an index of evaluation sets, and matching training records to it.

`curate benchmark add` reads an evaluation set in its published file format, hashes its images
(perceptual hash) and keeps its question/caption texts; training records whose image is within
`image_max_hamming` bits of a benchmark image, or whose text shares `min_ngram_overlap` word
n-grams with a benchmark text, are rejected with `benchmark_leak:<name>` and the matched item.

Benchmark texts are matched three ways: a question of `short_text_min_tokens` words or more
by shared word n-grams (verbatim, whatever the answer); a shorter question only together with
its answer within `answer_window` words of it (question+answer pairs: "is this normal?" alone
recurs everywhere); and paraphrases through the embedding pass (`curate.decontaminate.semantic`:
the index stores the texts' embeddings, records' sentences are matched by cosine). The release
formats are read by `curate.decontaminate.loaders`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.decontaminate.config import DecontamConfig
from curate.decontaminate.loaders import LOADERS
from curate.decontaminate.semantic import (
    MODEL_ID_KEY,
    MODEL_KEY,
    SemanticIndex,
    contains,
    embed_texts,
    load_text_tower,
)
from curate.dedup.imagehash import hash_blocks, image_hash
from curate.dedup.minhash import word_tokens
from curate.errors import InputError, MissingFile, SpecError
from curate.stages import Record, Rejected, Stage

LEAK_PREFIX = "benchmark_leak:"


@dataclass(frozen=True)
class Leak:
    """A training record that matches a benchmark item."""

    record_id: str
    benchmark: str
    item_id: str
    kind: str  # image | text
    detail: str
    match: str = ""  # phash | verbatim | semantic
    cosine: float | None = None  # semantic matches only

    @property
    def reason(self) -> str:
        return f"{LEAK_PREFIX}{self.benchmark}"

    def as_row(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "benchmark": self.benchmark,
            "item_id": self.item_id,
            "kind": self.kind,
            "detail": self.detail,
            "reason": self.reason,
            "match": self.match,
            "cosine": self.cosine,
        }


# ---- the index ------------------------------------------------------------------------------------

INDEX_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("image_file", pa.string()),
        pa.field("image_hash", pa.uint64()),
        pa.field("texts", pa.list_(pa.string())),
        pa.field("answer", pa.string()),
        # unit vectors of `texts` (the model in the metadata); absent in indexes before v2
        pa.field("text_vectors", pa.list_(pa.list_(pa.float32()))),
    ]
)


def _text_vectors(texts: list[list[str]], config: DecontamConfig) -> tuple[list, dict[str, str]]:
    """Per row, the embeddings of its texts, and the metadata naming the model."""
    if not config.semantic.enabled:
        return [None] * len(texts), {}
    tower = load_text_tower(config.semantic.model, config.semantic.device)
    flat = [t for row in texts for t in row]
    vectors = embed_texts(tower, flat, config.semantic.batch_size).tolist()
    out, at = [], 0
    for row in texts:
        out.append(vectors[at : at + len(row)])
        at += len(row)
    meta = {MODEL_KEY.decode(): config.semantic.model, MODEL_ID_KEY.decode(): tower.model_id}
    return out, meta


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
    rows: dict[str, list] = {
        "item_id": [],
        "image_file": [],
        "image_hash": [],
        "texts": [],
        "answer": [],
    }
    hashes: dict[str, int | None] = {}
    unreadable = missing = 0
    for item in LOADERS[fmt](root):
        value = None
        key = item.image_file or (f"{item.item_id}:embedded" if item.image_bytes else None)
        missing += key is None
        if key:
            if key not in hashes:
                try:
                    data = item.image_bytes or Path(key).read_bytes()
                    hashes[key] = image_hash(data, config.image_hash)
                except InputError:
                    hashes[key] = None
                    unreadable += 1
            value = hashes[key]
        rows["item_id"].append(item.item_id)
        rows["image_file"].append(item.image_file)
        rows["image_hash"].append(value)
        rows["texts"].append(list(item.texts))
        rows["answer"].append(item.answer or None)
    rows["text_vectors"], model_meta = _text_vectors(rows["texts"], config)
    table = pa.table(rows, schema=INDEX_SCHEMA).replace_schema_metadata(
        {
            "curate.benchmark.name": name,
            "curate.benchmark.format": fmt,
            "curate.benchmark.source": str(root),
            "curate.benchmark.image_hash": config.image_hash,
            **model_meta,
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
        "missing_images": missing,
        "texts": sum(len(t) for t in rows["texts"]),
        "image_hash": config.image_hash,
        "text_model": model_meta.get(MODEL_KEY.decode()),
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
        # a short question (whole) -> (benchmark, item_id, answer tokens), by question length
        self.short: dict[int, dict[bytes, list[tuple[str, str, tuple[bytes, ...]]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.names: list[str] = []
        self.semantic = SemanticIndex(config)

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
            model = meta.get(MODEL_KEY)
            index.add(path.stem, table.to_pylist(), model.decode() if model else None)
        return index

    @property
    def semantic_status(self) -> dict[str, str]:
        """Per benchmark: whether paraphrases are matched, or why not (for the manifest)."""
        return dict(self.semantic.status)

    def add(self, name: str, rows: Iterable[dict], text_model: str | None = None) -> None:
        rows = list(rows)
        self.names.append(name)
        self.semantic.add(name, text_model, rows)
        n = self.config.ngram
        for row in rows:
            value = row.get("image_hash")
            if value is not None:
                for key in hash_blocks(int(value), self.config.image_max_hamming + 1):
                    self.image_buckets[key].append((int(value), name, row["item_id"]))
            answer = tuple(word_tokens(row.get("answer") or ""))
            for text in row.get("texts") or []:
                tokens = word_tokens(text)
                if len(tokens) < self.config.short_text_min_tokens:
                    # "is this normal?" alone says nothing about a leak; with its answer next
                    # to it, it is the benchmark item
                    if tokens and answer and self.config.answer_window > 0:
                        self.short[len(tokens)][b" ".join(tokens)].append(
                            (name, row["item_id"], answer)
                        )
                    continue
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

    def match_question_answer(self, text: str) -> list[tuple[str, str]]:
        """(benchmark, item) for short questions found with their answer within
        `answer_window` words after (or before) them."""
        tokens = word_tokens(text)
        window = self.config.answer_window
        hits: set[tuple[str, str]] = set()
        for width, table in self.short.items():
            for start in range(len(tokens) - width + 1):
                for name, item, answer in table.get(b" ".join(tokens[start : start + width]), ()):
                    after = tokens[start + width : start + width + window + len(answer)]
                    before = tokens[max(0, start - window - len(answer)) : start]
                    if contains(after, answer) or contains(before, answer):
                        hits.add((name, item))
        return sorted(hits)

    def match(self, record: Record, image_hash_value: int | None = None) -> list[Leak]:
        """Every benchmark item the record matches, image matches first."""
        return self.match_many([record], [image_hash_value])[0]

    def match_many(
        self, records: list[Record], image_hashes: list[int | None] | None = None
    ) -> list[list[Leak]]:
        """`match` for a batch: the records' sentences are embedded in one call."""
        hashes = image_hashes or [None] * len(records)
        out = [self._match_exact(r, h) for r, h in zip(records, hashes)]
        for leaks, record, hits in zip(out, records, self.semantic.match(records)):
            rid = str(record.get("record_id"))
            verbatim = {(leak.benchmark, leak.item_id) for leak in leaks}
            for hit in hits:
                if (hit.benchmark, hit.item_id) not in verbatim:
                    detail = f"{hit.field}: paraphrase, cosine={hit.cosine}"
                    leaks.append(
                        Leak(
                            rid, hit.benchmark, hit.item_id, "text", detail, "semantic", hit.cosine
                        )
                    )
        return out

    def _match_exact(self, record: Record, image_hash_value: int | None) -> list[Leak]:
        rid = str(record.get("record_id"))
        leaks: list[Leak] = []
        if image_hash_value is None and record.get("image"):
            try:
                image_hash_value = image_hash(record["image"], self.config.image_hash)
            except InputError:
                image_hash_value = None
        if image_hash_value is not None:
            for name, item, distance in self.match_image(image_hash_value):
                leaks.append(Leak(rid, name, item, "image", f"hamming={distance}", "phash"))
        for field in self.config.text_fields:
            text = record.get(field)
            if isinstance(text, str) and text.strip():
                for name, item, count in self.match_text(text):
                    detail = f"{field}: {count} shared n-grams"
                    leaks.append(Leak(rid, name, item, "text", detail, "verbatim"))
                for name, item in self.match_question_answer(text):
                    detail = f"{field}: question with its answer"
                    leaks.append(Leak(rid, name, item, "text", detail, "verbatim"))
        return leaks


def first_leak(leaks: list[Leak]) -> Leak | None:
    """The leak that names the rejection: image evidence first, then benchmark and item order."""
    if not leaks:
        return None
    return sorted(leaks, key=lambda leak: (leak.kind != "image", leak.benchmark, leak.item_id))[0]


def find_leaks(
    records: Iterable[Record], index: BenchmarkIndex, batch_size: int = 256
) -> list[Leak]:
    out: list[Leak] = []
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= batch_size:
            out.extend(leak for leaks in index.match_many(batch) for leak in leaks)
            batch = []
    out.extend(leak for leaks in index.match_many(batch) for leak in leaks)
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
