"""Conformance on real report texts (IU X-ray, ../shared/realdata): MinHash estimates track exact
Jaccard, and exact copies of report text end in one LSH bucket."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from curate.dedup.minhash import (
    MinHasher,
    candidate_pairs,
    exact_jaccard,
    lsh_band_keys,
    word_shingles,
)


@pytest.mark.realdata
def test_minhash_on_iu_reports(realdata):
    path = realdata / "reports" / "iu_xray" / "indiana_reports.csv"
    with path.open(newline="") as handle:
        texts = [f"{r['findings']} {r['impression']}".strip() for r in csv.DictReader(handle)]
    texts = [t for t in texts if t][:600]
    sigs = MinHasher(128, 1, "word", 5).signatures(texts).values
    rng = np.random.default_rng(0)
    shingles = [word_shingles(t, 5) for t in texts]
    pairs = [tuple(rng.choice(len(texts), 2, replace=False)) for _ in range(300)]
    errors = [
        abs(float(np.mean(sigs[i] == sigs[j])) - exact_jaccard(shingles[i], shingles[j]))
        for i, j in pairs
    ]
    assert float(np.mean(errors)) < 0.01
    identical = [
        (i, j)
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if shingles[i] == shingles[j]
    ]
    assert identical  # normal reports repeat verbatim in IU X-ray
    found = candidate_pairs(lsh_band_keys(sigs, 32, 4))
    assert set(identical) <= found
