"""A built KB folder: the KB jsonl, its char-3-gram TF-IDF vectorizer and HNSW index, a manifest.

scispacy's own builder (`create_tfidf_ann_index`) refuses scipy >= 1.11, hard-codes
`min_df=10` (fails on small KBs) and builds with M=100, efConstruction=2000 (111 s for HPO
here). We build the same kind of index ourselves with parameters from
`curation_rules/linking/linker.v1.yaml` and hand it to scispacy's `CandidateGenerator`.

Layout of a KB folder::

    kb.jsonl                 scispacy KnowledgeBase jsonl, sorted by CUI
    aliases.json             the alias behind each ANN row (scispacy's ann_concept_aliases_list)
    tfidf_vectorizer.joblib  sklearn TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3))
    ann_index.bin(.dat)      nmslib HNSW over the alias vectors (cosinesimil_sparse)
    manifest.json            kb_sha256, aliases_sha256, sizes, sources, index parameters

The manifest ties the index to the KB: loading recomputes both hashes and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.enrich.link.kb import Concept, ConceptSet, file_sha256, read_kb_jsonl, write_kb_jsonl
from curate.errors import KBIndexMismatch, MalformedKB

FORMAT = "curate-kb/1"
KB_FILE = "kb.jsonl"
ALIASES_FILE = "aliases.json"
VECTORIZER_FILE = "tfidf_vectorizer.joblib"
INDEX_FILE = "ann_index.bin"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class IndexParams:
    """HNSW/TF-IDF parameters; the policy values live in linker.v1.yaml (`index:`)."""

    m: int = 16
    ef_construction: int = 100
    ef_search: int = 100
    min_df: int = 1
    threads: int = 0  # 0 = all cores

    def as_dict(self) -> dict[str, int]:
        return {
            "M": self.m,
            "efConstruction": self.ef_construction,
            "efSearch": self.ef_search,
            "min_df": self.min_df,
        }


def _aliases_sha256(aliases: list[str]) -> str:
    return hashlib.sha256("\n".join(aliases).encode("utf-8")).hexdigest()


def build_ann(aliases: list[str], params: IndexParams) -> tuple[Any, Any, list[str]]:
    """Fit the char-3-gram TF-IDF on the aliases and build the HNSW index over them.

    Returns (vectorizer, index, aliases kept): aliases whose vector is empty are left out, as
    nmslib crashes on all-zero rows.
    """
    import nmslib
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 3), min_df=params.min_df, dtype=np.float32
    )
    vectors = vectorizer.fit_transform(aliases)
    nonempty = np.asarray(vectors.getnnz(axis=1) > 0)
    if not nonempty.all():
        vectors = vectors[nonempty]
        aliases = [a for a, keep in zip(aliases, nonempty) if keep]
    index = nmslib.init(
        method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR
    )
    index.addDataPointBatch(vectors)
    index.createIndex(
        {
            "M": params.m,
            "efConstruction": params.ef_construction,
            "post": 0,
            "indexThreadQty": params.threads or (os.cpu_count() or 1),
        },
        print_progress=False,
    )
    index.setQueryTimeParams({"efSearch": params.ef_search})
    return vectorizer, index, aliases


def unique_aliases(concepts: list[Concept]) -> list[str]:
    """Every alias and canonical name once, in KB order (scispacy's alias_to_cuis keys)."""
    seen: dict[str, None] = {}
    for concept in concepts:
        for alias in [concept.canonical_name, *concept.aliases]:
            if alias:
                seen.setdefault(alias, None)
    return list(seen)


def build_kb_folder(
    concepts: ConceptSet,
    out_dir: Path,
    *,
    params: IndexParams,
    sources: list[dict[str, Any]],
    name: str = "kb",
    overwrite: bool = True,
) -> dict[str, Any]:
    """Write the KB and its index into `out_dir` atomically (temp folder, then rename).

    With `overwrite=False` a finished folder that appeared meanwhile (another worker built the
    same KB) is kept and its manifest returned.
    """
    import joblib

    if len(concepts) == 0:
        raise MalformedKB(
            "the KB holds no concepts (check the source filters)", reason="kb_without_aliases"
        )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        started = time.perf_counter()
        kb_sha = write_kb_jsonl(concepts, staging / KB_FILE)
        aliases = unique_aliases(concepts.concepts())
        if not aliases:
            raise MalformedKB("the KB holds no aliases", reason="kb_without_aliases")
        vectorizer, index, kept = build_ann(aliases, params)
        index_seconds = time.perf_counter() - started
        (staging / ALIASES_FILE).write_text(json.dumps(kept, ensure_ascii=False))
        joblib.dump(vectorizer, staging / VECTORIZER_FILE)
        index.saveIndex(str(staging / INDEX_FILE), save_data=True)
        manifest = {
            "format": FORMAT,
            "name": name,
            "kb_id": f"{name}-{kb_sha[:12]}",
            "kb_sha256": kb_sha,
            "aliases_sha256": _aliases_sha256(kept),
            "concepts": len(concepts),
            "aliases": len(kept),
            "index": params.as_dict(),
            "sources": sources,
            "build_seconds": round(index_seconds, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out_dir.exists():
            if not overwrite and (out_dir / MANIFEST_FILE).is_file():
                return read_manifest(out_dir)
            shutil.rmtree(out_dir)
        try:
            os.replace(staging, out_dir)
        except OSError:
            # Another worker finished the same build first: keep theirs.
            if not (out_dir / MANIFEST_FILE).is_file():
                raise
            return read_manifest(out_dir)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def read_manifest(kb_dir: Path) -> dict[str, Any]:
    path = Path(kb_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MalformedKB(
            f"{kb_dir} is not a built KB folder (no {MANIFEST_FILE}); run `curate kb build`",
            reason="missing_file",
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise MalformedKB(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise MalformedKB(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


@dataclass
class LoadedKB:
    """A KB folder in memory: concepts, alias list, vectorizer and ANN index, checked by hash."""

    path: Path
    manifest: dict[str, Any]
    concepts: list[Concept]
    aliases: list[str]
    vectorizer: Any
    ann_index: Any

    @property
    def kb_sha256(self) -> str:
        return self.manifest["kb_sha256"]

    @classmethod
    def load(cls, kb_dir: Path, *, ef_search: int | None = None) -> LoadedKB:
        import joblib
        import nmslib

        kb_dir = Path(kb_dir)
        manifest = read_manifest(kb_dir)
        kb_path = kb_dir / KB_FILE
        if not kb_path.is_file():
            raise MalformedKB(f"{kb_path} is missing", reason="missing_file")
        actual = file_sha256(kb_path)
        if actual != manifest["kb_sha256"]:
            raise KBIndexMismatch(
                f"{kb_path} has sha256 {actual[:12]}..., but the index in {kb_dir} was built "
                f"for {manifest['kb_sha256'][:12]}...; rebuild with `curate kb build`"
            )
        concepts = read_kb_jsonl(kb_path)
        aliases = json.loads((kb_dir / ALIASES_FILE).read_text())
        if _aliases_sha256(aliases) != manifest["aliases_sha256"]:
            raise KBIndexMismatch(f"{kb_dir / ALIASES_FILE} does not match the manifest")
        expected = set(unique_aliases(concepts))
        stray = [a for a in aliases[:1000] if a not in expected]
        if stray:
            raise KBIndexMismatch(f"index aliases not in {kb_path}, e.g. {stray[0]!r}")
        vectorizer = joblib.load(kb_dir / VECTORIZER_FILE)
        index = nmslib.init(
            method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR
        )
        index.loadIndex(str(kb_dir / INDEX_FILE), load_data=True)
        index.setQueryTimeParams(
            {"efSearch": ef_search or manifest.get("index", {}).get("efSearch", 100)}
        )
        return cls(kb_dir, manifest, concepts, aliases, vectorizer, index)

    def scispacy_kb(self) -> Any:
        """scispacy `KnowledgeBase` over the same concepts (for its CandidateGenerator)."""
        from scispacy.linking_utils import Entity, KnowledgeBase

        return KnowledgeBase(
            Entity(c.concept_id, c.canonical_name, c.aliases, c.types, c.definition)
            for c in self.concepts
        )

    def candidate_generator(self) -> Any:
        from scispacy.candidate_generation import CandidateGenerator

        return CandidateGenerator(
            ann_index=self.ann_index,
            tfidf_vectorizer=self.vectorizer,
            ann_concept_aliases_list=self.aliases,
            kb=self.scispacy_kb(),
        )
