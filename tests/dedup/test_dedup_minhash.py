"""MinHash: same permutations as datasketch, accurate Jaccard, shingles, LSH candidates."""

from __future__ import annotations

import numpy as np
import pytest

from curate.dedup.minhash import (
    MinHasher,
    affine32_permutations,
    candidate_pairs,
    char_shingles,
    exact_jaccard,
    lsh_band_keys,
    word_shingles,
    word_tokens,
)


def test_permutations_equal_datasketch_affine32():
    datasketch = pytest.importorskip("datasketch")
    a, b = affine32_permutations(64, 7)
    m = datasketch.MinHash(64, seed=7)
    assert m.scheme == "affine32"
    assert np.array_equal(m.permutations[0], a)
    assert np.array_equal(m.permutations[1], b)


def test_tokens_and_shingles():
    assert word_tokens("No acute, CARDIOPULMONARY-process.") == [
        b"no",
        b"acute",
        b"cardiopulmonary",
        b"process",
    ]
    assert word_tokens("Café Ü") == ["café".encode(), "ü".encode()]
    assert word_shingles("a b c d", 3) == {b"a b c", b"b c d"}
    assert word_shingles("a b", 3) == {b"a b"}
    assert word_shingles("  ...  ", 3) == set()
    assert char_shingles("AbC  d", 3) == {b"abc", b"bc ", b"c d"}


def test_identical_and_empty_documents():
    hasher = MinHasher(64, 1, "word", 2)
    sigs = hasher.signatures(["the left lung is clear", "The LEFT lung, is clear.", "", "x"])
    assert np.array_equal(sigs.values[0], sigs.values[1])
    assert sigs.empty.tolist() == [False, False, True, False]
    assert (sigs.values[2] == np.uint32(0xFFFFFFFF)).all()


@pytest.mark.parametrize("kind,size", [("word", 2), ("word", 5), ("char", 5)])
def test_estimates_track_exact_jaccard(kind, size):
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(300)]
    base = rng.choice(vocab, 60).tolist()
    docs, exact = [], []
    for k in range(0, 60, 6):  # replace a growing tail: Jaccard from 1 down to ~0
        doc = base[: 60 - k] + rng.choice(vocab, k).tolist()
        docs.append(" ".join(doc))
    hasher = MinHasher(256, 3, kind, size)
    sigs = hasher.signatures([" ".join(base)] + docs).values
    errors = []
    ref = {"word": word_shingles, "char": char_shingles}[kind](" ".join(base), size)
    for i, doc in enumerate(docs, start=1):
        exact = exact_jaccard(ref, {"word": word_shingles, "char": char_shingles}[kind](doc, size))
        errors.append(abs(float(np.mean(sigs[0] == sigs[i])) - exact))
    # 256 permutations: standard error <= 0.032; the mean error is far below.
    assert max(errors) < 0.12
    assert float(np.mean(errors)) < 0.04


def test_batches_do_not_change_signatures():
    texts = [f"report {i} lungs clear no effusion seen {i % 3}" for i in range(50)]
    hasher = MinHasher(32, 1, "word", 3, chunk_elements=64)  # forces many chunks
    whole = hasher.signatures(texts).values
    parts = np.concatenate([hasher.signatures(texts[i : i + 7]).values for i in range(0, 50, 7)])
    assert np.array_equal(whole, parts)


def test_lsh_candidates_find_similar_pairs_only():
    texts = [
        "the cardiac silhouette and mediastinum are within normal limits no effusion",
        "the cardiac silhouette and mediastinum are within normal limits no effusion seen",
        "axial ct shows a hypodense lesion in the right hepatic lobe with rim enhancement",
    ]
    sigs = MinHasher(128, 1, "word", 2).signatures(texts).values
    pairs = candidate_pairs(lsh_band_keys(sigs, 32, 4))
    assert pairs == {(0, 1)}
    with pytest.raises(ValueError):
        lsh_band_keys(sigs, 64, 4)
