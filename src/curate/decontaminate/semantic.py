"""Paraphrase decontamination: benchmark questions matched by text-embedding cosine.

`curate benchmark add` stores an L2-normalised embedding of every benchmark text (the model of
`semantic.model`, loaded by `curate.embed.models` like the embedding pass loads it) and names
the model in the index. A build splits each record text into sentences (a benchmark question
is one sentence inside a longer caption or instruction), embeds them with the index's model and
compares them with the benchmark texts:

- a benchmark question of `short_text_min_tokens` words or more is leaked by any sentence with
  cosine >= `min_cosine`;
- a shorter one ("is there an effusion?") only by a sentence that is itself a question
  (`short_needs_question`) and has the item's answer within `answer_window` words of it, the
  same second key as the verbatim rule: short generic questions alone are everywhere.

An index built before embeddings were stored has none: semantic matching is off for it, with a
warning (`BenchmarkIndex.semantic_status`), never a crash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from curate.dedup.minhash import word_tokens

if TYPE_CHECKING:
    from curate.decontaminate.config import DecontamConfig
    from curate.embed.models import Tower

LOG = logging.getLogger(__name__)

MODEL_KEY = b"curate.benchmark.text_model"
MODEL_ID_KEY = b"curate.benchmark.text_model_id"
_SENTENCE_END = re.compile(r"(?<=[.?!;])\s+|\s*\n+\s*")
# speaker/field labels of Q&A and instruction formats: not part of the question
_LABEL = re.compile(
    r"^\s*(?:question|answer|q|a|human|user|gpt|assistant|<image>)\s*[:\-]?\s*", re.IGNORECASE
)
_QUESTION_WORDS = frozenset(
    b"is are was were does do did can could will would should has have what which where when "
    b"who whom whose why how".split()
)


def load_text_tower(model: str, device: str = "auto") -> Tower:
    """The text tower of `model`, loaded the way the embedding pass loads it."""
    from curate.extras import require

    # one line naming the extra (or the verbatim-only rules), not an ImportError on a worker
    require("embed", "paraphrase decontamination (rules dedup/decontam.v2; v1 is verbatim only)")
    from curate.embed.config import resolve_device
    from curate.embed.models import load_tower

    return load_tower(model, "text", resolve_device(device))


def embed_texts(tower: Tower, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """(len(texts), dim) unit vectors; an empty text gets a zero vector (matches nothing)."""
    # each distinct text once (report sentences such as "No pneumothorax." repeat), in
    # batches of similar length (a batch is padded to its longest text)
    unique = sorted(set(texts), key=lambda t: (len(t), t))
    found = np.zeros((len(unique), tower.dim), dtype=np.float32)
    for start in range(0, len(unique), batch_size):
        vectors, issues = tower.embed(unique[start : start + batch_size])
        ok = [start + i for i, issue in enumerate(issues) if issue is None]
        if ok:
            found[ok] = vectors
    row_of = {text: i for i, text in enumerate(unique)}
    return found[[row_of[t] for t in texts]] if texts else found


def status(config: DecontamConfig, model: str | None, has_vectors: bool) -> str:
    """Whether a benchmark's paraphrases are matched ("on (<model>)"), or why not."""
    if not config.semantic.enabled:
        return "off (switched off by the rules)"
    if model is None or not has_vectors:
        return (
            "off: the index has no question embeddings (built before curate stored them); "
            "re-run `curate benchmark add` to match paraphrases"
        )
    if model != config.semantic.model:
        return (
            f"off: the index was embedded with {model!r}, the rules say {config.semantic.model!r}"
        )
    return f"on ({model})"


def index_status(config: DecontamConfig) -> dict[str, str]:
    """Per benchmark of `config.index`, `status` read from the Parquet footers alone (for the
    manifest: a build against an old index says that paraphrases were not looked for)."""
    import pyarrow.parquet as pq

    from curate import fs

    out: dict[str, str] = {}
    for path in sorted(fs.glob(fs.join(str(config.index), "*.parquet"))):
        schema = pq.read_schema(path) if fs.is_local(path) else None
        if schema is None:
            import pyarrow as pa

            schema = pq.read_schema(pa.BufferReader(fs.read_bytes(path)))
        model = (schema.metadata or {}).get(MODEL_KEY)
        name = path.rsplit("/", 1)[-1].removesuffix(".parquet")
        out[name] = status(
            config, model.decode() if model else None, "text_vectors" in schema.names
        )
    return out


@dataclass(frozen=True)
class Sentence:
    """One sentence of a record text: what is embedded, and where its words sit in the text."""

    text: str
    start: int  # word offset in the whole text (curate.dedup.minhash.word_tokens)
    end: int
    is_question: bool


def sentences(text: str, min_tokens: int = 1) -> list[Sentence]:
    """The text's sentences of `min_tokens` words or more, speaker labels stripped."""
    out: list[Sentence] = []
    offset = 0
    for part in _SENTENCE_END.split(text):
        tokens = word_tokens(part)
        start, offset = offset, offset + len(tokens)
        body = _LABEL.sub("", part).strip()
        words = word_tokens(body)
        if len(words) < min_tokens:
            continue
        question = body.endswith("?") or words[0] in _QUESTION_WORDS
        out.append(Sentence(body, start, offset, question))
    return out


def contains(tokens: Sequence[bytes], part: tuple[bytes, ...]) -> bool:
    """Whether `part` occurs as consecutive tokens of `tokens`."""
    width = len(part)
    return any(tuple(tokens[i : i + width]) == part for i in range(len(tokens) - width + 1))


@dataclass
class _Items:
    """The embedded benchmark texts of one model: a row per text."""

    vectors: list[np.ndarray] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (benchmark, item_id)
    short: list[bool] = field(default_factory=list)
    answers: list[tuple[bytes, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class SemanticHit:
    benchmark: str
    item_id: str
    field: str
    cosine: float


class SemanticIndex:
    """Benchmark text embeddings by model, matched against record sentences in batches."""

    def __init__(self, config: DecontamConfig) -> None:
        self.config = config
        self.items: dict[str, _Items] = {}
        self.status: dict[str, str] = {}  # benchmark -> "on (<model>)" or why it is off
        self._matrix: dict[str, np.ndarray] = {}
        self._towers: dict[str, Tower] = {}

    def add(self, name: str, model: str | None, rows: list[dict]) -> None:
        """Index one benchmark's texts whose vectors `curate benchmark add` stored."""
        has_vectors = any(row.get("text_vectors") for row in rows)
        self.status[name] = status(self.config, model, has_vectors)
        if model is None or not self.status[name].startswith("on"):
            if self.config.semantic.enabled:
                LOG.warning("benchmark %s: paraphrase matching %s", name, self.status[name])
            return
        items = self.items.setdefault(model, _Items())
        short_below = self.config.short_text_min_tokens
        for row in rows:
            answer = tuple(word_tokens(row.get("answer") or ""))
            for text, vector in zip(row.get("texts") or [], row.get("text_vectors") or []):
                if vector is None:
                    continue
                is_short = len(word_tokens(text)) < short_below
                if is_short and (not answer or self.config.answer_window <= 0):
                    continue  # a short question without its answer is no evidence
                items.vectors.append(np.asarray(vector, dtype=np.float32))
                items.keys.append((name, row["item_id"]))
                items.short.append(is_short)
                items.answers.append(answer)
        self._matrix.pop(model, None)

    @property
    def active(self) -> bool:
        return any(items.keys for items in self.items.values())

    def _tower(self, model: str) -> Tower:
        if model not in self._towers:
            self._towers[model] = load_text_tower(model, self.config.semantic.device)
        return self._towers[model]

    def _vectors(self, model: str) -> np.ndarray:
        if model not in self._matrix:
            self._matrix[model] = np.stack(self.items[model].vectors)
        return self._matrix[model]

    def match(self, records: Sequence[dict[str, Any]]) -> list[list[SemanticHit]]:
        """Per record, the benchmark texts it paraphrases (best cosine per item)."""
        out: list[list[SemanticHit]] = [[] for _ in records]
        if not self.active:
            return out
        semantic = self.config.semantic
        found: list[tuple[int, str, list[bytes], Sentence]] = []  # record, field, tokens, sentence
        for i, record in enumerate(records):
            for name in self.config.text_fields:
                text = record.get(name)
                if isinstance(text, str) and text.strip():
                    tokens = word_tokens(text)
                    for sentence in sentences(text, semantic.min_sentence_tokens):
                        found.append((i, name, tokens, sentence))
        if not found:
            return out
        for model, items in self.items.items():
            if not items.keys:
                continue
            vectors = embed_texts(
                self._tower(model), [s.text for *_, s in found], semantic.batch_size
            )
            cosines = vectors @ self._vectors(model).T
            best: dict[tuple[int, str, str], SemanticHit] = {}
            for row, col in zip(*np.nonzero(cosines >= semantic.min_cosine)):
                at, name, tokens, sentence = found[row]
                if items.short[col] and not self._short_confirmed(
                    tokens, sentence, items.answers[col]
                ):
                    continue
                benchmark, item = items.keys[col]
                cosine = round(float(cosines[row, col]), 4)
                key = (at, benchmark, item)
                if key not in best or best[key].cosine < cosine:
                    best[key] = SemanticHit(benchmark, item, name, cosine)
            for (at, _, _), hit in sorted(best.items(), key=lambda kv: kv[0]):
                out[at].append(hit)
        return out

    def _short_confirmed(
        self, tokens: list[bytes], sentence: Sentence, answer: tuple[bytes, ...]
    ) -> bool:
        if self.config.semantic.short_needs_question and not sentence.is_question:
            return False
        window = self.config.answer_window
        after = tokens[sentence.end : sentence.end + window + len(answer)]
        before = tokens[max(0, sentence.start - window - len(answer)) : sentence.start]
        return contains(after, answer) or contains(before, answer)


def manifest_fields(config: DecontamConfig | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the manifest's `benchmark_matches` adds to its counts: matches by kind (phash,
    verbatim, semantic), and per benchmark whether paraphrases were looked for, with a warning
    for each benchmark where they were not (an index built before embeddings were stored)."""
    by_match: dict[str, int] = {}
    for row in rows:
        kind = str(row.get("match") or row.get("kind"))
        by_match[kind] = by_match.get(kind, 0) + 1
    out: dict[str, Any] = {"by_match": dict(sorted(by_match.items()))}
    if config is not None and config.index:
        status_by = index_status(config)
        out["semantic"] = status_by
        out["warnings"] = [
            f"{name}: paraphrase matching {state}"
            for name, state in status_by.items()
            if config.semantic.enabled and not state.startswith("on")
        ]
    return out
