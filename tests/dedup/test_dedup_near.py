"""Near-duplicates: perceptual hashes, union-find groups, one kept record, Beam == pure."""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from curate.dedup.beam import NearDuplicates
from curate.dedup.config import NearDedupConfig, SemanticDedupConfig
from curate.dedup.groups import Duplicate, Edge, resolve
from curate.dedup.imagehash import dhash, hamming, hash_blocks, phash
from curate.dedup.near import find_near_duplicates
from curate.dedup.semantic import find_semantic_duplicates
from curate.errors import EmptyInput, SpecError, UnreadableImage
from curate.rules.backed import load_rule_file


def _jpeg(seed: int, size=(240, 200), quality: int = 92) -> bytes:
    rng = np.random.default_rng(seed)
    grid = rng.normal(size=(8, 8, 3))
    grid = ((grid - grid.min()) / np.ptp(grid) * 255).astype(np.uint8)
    image = Image.fromarray(grid).resize((240, 200), Image.Resampling.BICUBIC).resize(size)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _cropped(seed: int) -> bytes:
    image = Image.open(io.BytesIO(_jpeg(seed))).crop((24, 20, 216, 180))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=12)
    return buf.getvalue()


def _record(rid: str, data: bytes, caption: str) -> dict:
    w, h = Image.open(io.BytesIO(data)).size
    return {
        "record_id": rid,
        "image": data,
        "image_width": w,
        "image_height": h,
        "caption": caption,
    }


def test_hashes_survive_reencoding_and_resizing():
    original = _jpeg(1)
    for copy in (_jpeg(1, quality=30), _jpeg(1, size=(120, 100))):
        assert hamming(phash(original), phash(copy)) <= 4
        assert hamming(dhash(original), dhash(copy)) <= 6
    assert hamming(phash(original), phash(_jpeg(2))) > 16


def test_hash_errors_are_named():
    with pytest.raises(EmptyInput):
        phash(b"")
    with pytest.raises(UnreadableImage):
        phash(b"\x89PNG\r\n\x1a\n-not-really")


def test_hash_blocks_pigeonhole():
    a = 0x0123456789ABCDEF
    b = a ^ 0b1011  # 3 bits apart
    shared = set(hash_blocks(a, 4)) & set(hash_blocks(b, 4))
    assert shared  # within 3 bits => at least one of 4 blocks identical


def test_resolve_keeps_one_per_group_deterministically():
    edges = [
        Edge("c", "b", "near_duplicate_caption"),
        Edge("b", "a", "near_duplicate_image"),
        Edge("x", "y", "semantic_duplicate", a_rank=10, b_rank=20),
    ]
    expected = [
        Duplicate("b", "near_duplicate_image", "a"),
        Duplicate("c", "near_duplicate_caption", "a"),
        Duplicate("x", "semantic_duplicate", "y"),
    ]
    assert resolve(edges) == expected
    assert resolve(list(reversed(edges))) == expected


CAPTION = "axial contrast enhanced ct shows a large hypodense mass in the left hepatic lobe"


def _corpus() -> list[dict]:
    return [
        _record("a-orig", _jpeg(1), CAPTION),
        _record(
            "b-small",
            _jpeg(1, size=(120, 100), quality=40),
            "an unrelated caption about brain mri findings",
        ),
        _record(
            "c-other",
            _jpeg(2),
            "histology section stained with hematoxylin and eosin at high power",
        ),
        # a reworded caption over an image that is not clearly different (here: a quality-12
        # re-encoding of a crop, too far for the image check), and one over a clearly different
        # image: another figure that happens to be described alike is kept
        _record("d-reworded", _cropped(1), CAPTION.replace("shows", "demonstrates") + "."),
        _record("g-other-figure", _jpeg(3), CAPTION.replace("shows", "demonstrates") + "."),
        _record("e-short", _jpeg(4), "CT scan"),
        _record("f-short", _jpeg(5), "CT scan"),
    ]


EXPECTED = [
    ("b-small", "near_duplicate_image", "a-orig"),
    ("d-reworded", "near_duplicate_caption", "a-orig"),
]


def test_find_near_duplicates_pure():
    got = [d.as_tuple() for d in find_near_duplicates(_corpus(), NearDedupConfig())]
    # a-orig is kept (largest image); short identical captions prove nothing.
    assert got == EXPECTED


def test_near_duplicates_beam_matches_pure():
    with beam.Pipeline() as pipeline:
        decisions = pipeline | beam.Create(_corpus()) | NearDuplicates(NearDedupConfig())
        assert_that(decisions, equal_to(EXPECTED))


def test_semantic_joins_the_same_groups_in_beam():
    vectors = [
        ("c-other", np.array([1.0, 0.0, 0.0], np.float32)),
        ("e-short", np.array([0.999, 0.01, 0.0], np.float32)),
        ("f-short", np.array([0.0, 1.0, 0.0], np.float32)),
    ]
    semantic = SemanticDedupConfig(enabled=True, n_clusters=2)
    with beam.Pipeline() as pipeline:
        vecs = pipeline | "Vectors" >> beam.Create(vectors)
        decisions = (
            pipeline
            | "Records" >> beam.Create(_corpus())
            | NearDuplicates(NearDedupConfig(), vectors=vecs, semantic=semantic)
        )
        assert_that(decisions, equal_to(EXPECTED + [("e-short", "semantic_duplicate", "c-other")]))


def test_semantic_keeps_one_per_group():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 16))
    vectors = np.concatenate([base, base[:2] + 1e-4 * rng.normal(size=(2, 16)), base[:1]])
    ids = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"]
    got = find_semantic_duplicates(ids, vectors, SemanticDedupConfig(enabled=True, n_clusters=3))
    assert [d.as_tuple() for d in got] == [
        ("r5", "semantic_duplicate", "r0"),
        ("r6", "semantic_duplicate", "r1"),
        ("r7", "semantic_duplicate", "r0"),
    ]


def test_rule_files_match_model_defaults_and_need_why(tmp_path):
    assert NearDedupConfig.from_rules("dedup/near_dedup.v1").model_dump(
        exclude={"rules"}
    ) == NearDedupConfig().model_dump(exclude={"rules"})
    assert SemanticDedupConfig.from_rules("dedup/semantic_dedup.v1").model_dump(
        exclude={"rules"}
    ) == SemanticDedupConfig().model_dump(exclude={"rules"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nenabled: {value: true}\n")
    with pytest.raises(SpecError):
        load_rule_file(str(bad))
    with pytest.raises(ValueError):
        NearDedupConfig(caption={"bands": 64, "rows": 4, "num_perm": 128})


def test_report_policy_disables_text_dedup_and_apply_decisions():
    from curate.dedup.groups import apply_decisions

    config = NearDedupConfig.from_rules("dedup/near_dedup_reports.v1")
    assert config.caption.enabled is False and config.image.enabled is True
    reports = [
        {
            "record_id": "s1",
            "report_text": "No acute cardiopulmonary process. Lungs are clear.",
            "image": _jpeg(1),
        },
        {
            "record_id": "s2",
            "report_text": "No acute cardiopulmonary process. Lungs are clear.",
            "image": _jpeg(2),
        },
        {"record_id": "s3", "report_text": "Small left effusion.", "image": _jpeg(2, quality=35)},
    ]
    decisions = [d.as_tuple() for d in find_near_duplicates(reports, config)]
    assert decisions == [("s3", "near_duplicate_image", "s2")]
    kept, rejected = apply_decisions(reports, decisions)
    assert [r["record_id"] for r in kept] == ["s1", "s2"]
    assert [(r.record["record_id"], r.reason, r.duplicate_of) for r in rejected] == [
        ("s3", "near_duplicate_image", "s2")
    ]


def test_semantic_retune_from_sidecar(tmp_path):
    from curate.dedup.semantic import find_semantic_duplicates_from_sidecar
    from curate.embed.beam import write_sidecar

    path = str(tmp_path / "embeddings_text.parquet")
    write_sidecar(
        path,
        [
            ("a", np.array([1.0, 0.0], np.float32)),
            ("b", np.array([0.99, 0.1], np.float32)),
            ("c", np.array([0.0, 1.0], np.float32)),
        ],
        "m",
    )
    strict = SemanticDedupConfig(enabled=True, n_clusters=1, eps=0.001)
    loose = SemanticDedupConfig(enabled=True, n_clusters=1, eps=0.01)
    assert find_semantic_duplicates_from_sidecar(path, strict) == []
    assert [d.as_tuple() for d in find_semantic_duplicates_from_sidecar(path, loose)] == [
        ("b", "semantic_duplicate", "a")
    ]


def test_size_read_from_header_when_columns_missing():
    from curate.dedup.near import near_attributes

    record = {"record_id": "x", "image": _jpeg(1, size=(120, 100)), "caption": ""}
    assert near_attributes(record, NearDedupConfig()).pixels == 12000
