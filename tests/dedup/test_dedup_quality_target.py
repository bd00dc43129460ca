"""The measured-quality target on a small generated set: recall >= 0.95 at precision >= 0.99
for re-encoded and resized copies (benchmarks/dedup_quality.py runs the full-size version)."""

from __future__ import annotations

from curate.dedup.config import NearDedupConfig
from curate.dedup.near import find_near_duplicates
from curate.demo.near_duplicates import generate, score


def test_reencoded_and_resized_copies_meet_target():
    planted = generate(
        n_originals=80, copies_per_variant=20, seed=3, variants=("reencoded", "resized", "reworded")
    )
    decisions = [
        d.as_tuple() for d in find_near_duplicates([p.record for p in planted], NearDedupConfig())
    ]
    result = score(planted, decisions)
    assert result["all"]["precision"] >= 0.99
    assert result["reencoded"]["recall"] >= 0.95
    assert result["resized"]["recall"] >= 0.95
    assert result["reworded"]["copies"] == 20
