"""Grouped caption LSH (curate.dedup.caption_lsh, CaptionEdges): the same decisions as one
verification per bucket, with compact shuffles.

References: the per-bucket path (`near.caption_edges`, the logic the former Beam path ran per
bucket) and a brute force over the signatures (every pair sharing a bucket, estimated Jaccard
>= min_jaccard). Data: planted rewordings at several edit levels (pairs on both sides of the
threshold), a big bucket of identical boilerplate with a few variants, and short captions.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from curate.dedup.beam import NearDuplicates
from curate.dedup.caption_lsh import (
    BucketItems,
    CandidatePack,
    SignatureBatch,
    caption_layout,
    grouped_caption_edges,
    verify_candidates,
)
from curate.dedup.config import NearDedupConfig
from curate.dedup.groups import Edge, resolve
from curate.dedup.minhash import candidate_pairs, lsh_band_keys
from curate.dedup.near import (
    CAPTION_REASON,
    NearAttributes,
    caption_edges,
    find_near_duplicates,
    text_signatures,
)
from curate.shuffle import shuffled_bytes

CONFIG = NearDedupConfig(image={"enabled": False})
CAP = CONFIG.caption
BOILERPLATE = "representative images of the study cohort are shown in this figure panel"


def planted_captions(n_originals: int = 500, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"term{i}" for i in range(400)]
    originals = [" ".join(rng.choice(vocab, int(rng.integers(12, 26)))) for _ in range(n_originals)]
    copies = []
    for _ in range(n_originals // 2):
        words = originals[int(rng.integers(n_originals))].split()
        for _ in range(int(rng.integers(1, 7))):  # 1-6 edits: estimated Jaccard ~0.3 to ~0.9
            words[int(rng.integers(len(words)))] = str(rng.choice(vocab))
        copies.append(" ".join(words))
    boilerplate = [BOILERPLATE] * 150 + [
        BOILERPLATE.replace("study", str(rng.choice(vocab))) for _ in range(15)
    ]
    short = ["CT scan"] * 10 + ["Figure 1"] * 5
    captions = originals + copies + boilerplate + short
    return [captions[i] for i in rng.permutation(len(captions))]


def planted_attributes(seed: int = 0) -> list[NearAttributes]:
    rng = np.random.default_rng(seed + 1)
    return [
        NearAttributes(f"r{i:05d}", None, int(rng.integers(1, 4)) * 100, caption)
        for i, caption in enumerate(planted_captions(seed=seed))
    ]


@pytest.fixture(scope="module")
def planted() -> tuple[list[NearAttributes], np.ndarray]:
    attrs = planted_attributes()
    chosen, sigs = text_signatures(attrs, CAP)
    return chosen, sigs


def brute_force_edges(chosen: list[NearAttributes], sigs: np.ndarray) -> list[Edge]:
    keys = lsh_band_keys(sigs, CAP.bands, CAP.rows)
    return [
        Edge(chosen[i].record_id, chosen[j].record_id, CAPTION_REASON, 1.0, 1.0)
        for i, j in sorted(candidate_pairs(keys))
        if (sigs[i] == sigs[j]).mean() >= CAP.min_jaccard
    ]


def batches_of(chosen, sigs, size: int = 300) -> list[SignatureBatch]:
    ranks = np.array([a.keep_rank(CONFIG.keep) for a in chosen])
    return [
        SignatureBatch(
            [a.record_id for a in chosen[i : i + size]], sigs[i : i + size], ranks[i : i + size]
        )
        for i in range(0, len(chosen), size)
    ]


def decisions(edges) -> list[tuple[str, str, str]]:
    return [d.as_tuple() for d in resolve(edges)]


def groups(edges) -> set[frozenset[str]]:
    members: dict[str, set[str]] = {}
    for rid, _, kept in decisions(edges):
        members.setdefault(kept, {kept}).add(rid)
    return {frozenset(m) for m in members.values()}


def test_data_has_pairs_on_both_sides_of_the_threshold(planted):
    chosen, sigs = planted
    keys = lsh_band_keys(sigs, CAP.bands, CAP.rows)
    similarity = [(sigs[i] == sigs[j]).mean() for i, j in candidate_pairs(keys)]
    t = CAP.min_jaccard
    assert sum(t - 0.1 <= s < t for s in similarity) >= 5  # candidates just below: rejected
    assert sum(t <= s < t + 0.1 for s in similarity) >= 5  # and just above: linked
    _, counts = np.unique(keys[:, 0], return_counts=True)
    assert counts.max() >= 150  # the boilerplate bucket


@pytest.mark.parametrize("group_size", [1_000_000, 3_000, 100])
def test_grouped_steps_decide_as_per_bucket_and_brute_force(planted, group_size):
    chosen, sigs = planted
    layout = caption_layout(len(chosen), CAP.bands, group_size)
    edges = grouped_caption_edges(
        batches_of(chosen, sigs), CAP.bands, CAP.rows, CAP.min_jaccard, group_size
    )
    per_bucket = caption_edges(chosen, CONFIG)
    assert decisions(edges) == decisions(per_bucket)
    assert groups(edges) == groups(brute_force_edges(chosen, sigs))
    assert len(edges) < len(per_bucket)  # buckets with the same members are verified once
    if group_size == 100:
        assert layout.band_groups > 100 and layout.record_groups > 5


def test_same_members_are_verified_once():
    sig = np.arange(16, dtype=np.uint32)
    near = sig.copy()
    near[:4] += 1  # estimated Jaccard 0.75
    far = sig + 100
    pack = CandidatePack(
        ["b", "a", "c"],
        np.stack([sig, near, far]),
        np.array([1.0, 2.0, 3.0]),
        BucketItems(
            np.array([0, 1, 0, 1, 0, 1, 2], np.uint32),  # (a, b) share 3 buckets, c is with both
            np.array([0, 0, 1, 1, 2, 2, 2], np.uint16),
            np.array([7, 7, 9, 9, 5, 5, 5], np.uint64),
        ),
    )
    # the pair's three buckets checked once; the triple adds nothing (c is too far)
    assert verify_candidates([pack], 0.5) == [Edge("a", "b", CAPTION_REASON, 2.0, 1.0)]


def _records(attrs: list[NearAttributes]) -> list[dict]:
    return [
        {
            "record_id": a.record_id,
            "caption": a.text,
            "image_width": a.pixels // 100,
            "image_height": 100,
        }
        for a in attrs
    ]


def test_beam_caption_path_decides_as_per_bucket_with_compact_shuffles():
    attrs = planted_attributes(seed=3)
    chosen, _ = text_signatures(attrs, CAP)
    # the in-memory path: the same candidate edges, each drop confirmed against its kept record
    expected = [d.as_tuple() for d in find_near_duplicates(_records(attrs), CONFIG)]
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    got = (
        pipeline
        | beam.Create(_records(attrs))
        | NearDuplicates(CONFIG, caption_group_size=2_000, text_batch_size=256)
    )
    assert_that(got, equal_to(expected))
    result = pipeline.run()
    result.wait_until_finish()
    shuffle = shuffled_bytes(result.metrics())
    bands = shuffle["phase2.near_caption_bands"]
    signatures = shuffle["phase2.near_caption_signatures"]
    assert "phase2.near_caption_candidates" in shuffle
    # no signature per band: ~11 bytes a bucket membership plus handles (a signature is 512)
    assert bands["bytes"] < 24 * CAP.bands * len(chosen)
    assert signatures["bytes"] < 2 * 4 * CAP.num_perm * len(chosen)
    assert bands["elements"] < len(chosen)  # packs, not items


def test_repeated_record_ids_are_refused_not_merged(planted):
    chosen, sigs = planted
    batch = batches_of(chosen[:40], sigs[:40], size=40)[0]
    twice = [batch, batch._replace(record_ids=list(batch.record_ids))]
    with pytest.raises(ValueError, match="ids must be unique"):
        grouped_caption_edges(twice, CAP.bands, CAP.rows, CAP.min_jaccard, 1_000_000)
