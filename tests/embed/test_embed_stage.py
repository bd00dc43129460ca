"""Embedding towers, the RunInference pass and its sidecar."""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from curate.embed.beam import EmbedRecords, embed_records, read_sidecar, sidecar_path, write_sidecar
from curate.embed.config import EmbedConfig, resolve_device
from curate.embed.models import available_loaders, load_tower, minilm_path
from curate.errors import SpecError

TEXTS = ["No acute cardiopulmonary abnormality.", "Large right pleural effusion with atelectasis."]


def _jpeg(seed: int, size=(160, 128), quality: int = 92) -> bytes:
    rng = np.random.default_rng(seed)
    grid = rng.normal(size=(8, 8, 3))
    grid = ((grid - grid.min()) / np.ptp(grid) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grid).resize((160, 128), Image.Resampling.BICUBIC).resize(size).save(
        buf, "JPEG", quality=quality
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def minilm():
    return load_tower("minilm", "text", "cpu")


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        TEXTS, normalize_embeddings=True
    )
    vectors, issues = minilm.embed(TEXTS + [""])
    assert issues == [None, None, "empty_text"]
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_dct_tower_is_robust_to_copies_and_reports_bad_images():
    tower = load_tower("default", "image", "cpu")
    vectors, issues = tower.embed([_jpeg(1), _jpeg(1, (80, 64), 40), _jpeg(2), b"garbage"])
    assert issues == [None, None, None, "unreadable_image"]
    assert vectors.shape == (3, 255)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > 0.95
    assert float(vectors[0] @ vectors[2]) < 0.8


def test_embed_records_beam_writes_sidecar(tmp_path, minilm):
    records = [{"record_id": f"r{i}", "caption": t, "image": _jpeg(i)} for i, t in enumerate(TEXTS)]
    records.append({"record_id": "no-text", "caption": "", "image": b"garbage"})
    config = EmbedConfig(batch_size=2, device="cpu")
    with beam.Pipeline() as pipeline:
        recs = pipeline | beam.Create(records)
        _ = recs | "text" >> EmbedRecords(config, "text", out_dir=str(tmp_path))
        image = recs | "image" >> EmbedRecords(
            config, "image", out_dir=str(tmp_path), with_failures=True
        )
        assert_that(image["failed"], equal_to([("no-text", "unreadable_image")]))
    ids, matrix, model_ids = read_sidecar(sidecar_path(str(tmp_path), "text"))
    assert sorted(ids) == ["r0", "r1"]
    assert model_ids == {"sentence-transformers/all-MiniLM-L6-v2"}
    expected, _, _ = embed_records(records, config, "text", model=minilm)
    for rid, vec in expected:
        np.testing.assert_allclose(matrix[ids.index(rid)], vec, atol=1e-6)
    ids, matrix, model_ids = read_sidecar(sidecar_path(str(tmp_path), "image"))
    assert sorted(ids) == ["r0", "r1"] and matrix.shape == (2, 255)
    assert model_ids == {"curate/dct-gray32-v1"}


def test_sidecar_roundtrip(tmp_path):
    path = str(tmp_path / "attributes" / "embeddings_text.parquet")
    vectors = [("a", np.array([0.1, 0.2], np.float32)), ("b", np.array([0.3, 0.4], np.float32))]
    write_sidecar(path, vectors, "m")
    ids, matrix, model_ids = read_sidecar(path)
    assert ids == ["a", "b"] and model_ids == {"m"}
    np.testing.assert_array_equal(matrix, np.stack([v for _, v in vectors]))


def test_hf_clip_loader_with_tiny_random_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    config = CLIPConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    transformers.set_seed(0)
    CLIPModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = load_tower(f"hf_clip:{tmp_path}", "text", "cpu")
    image = load_tower(f"hf_clip:{tmp_path}", "image", "cpu")
    tv, t_issues = text.embed(TEXTS)
    iv, i_issues = image.embed([_jpeg(1), b"bad"])
    assert tv.shape == (2, 16) and iv.shape == (1, 16)
    assert t_issues == [None, None] and i_issues == [None, "unreadable_image"]
    np.testing.assert_allclose(np.linalg.norm(iv, axis=1), 1.0, atol=1e-5)
    assert text.model_id == image.model_id == f"hf_clip:{tmp_path.name}"


def test_loader_registry_and_device():
    assert {"minilm", "dct", "hf_clip", "curate_cfm", "default"} <= set(available_loaders())
    with pytest.raises(SpecError):
        load_tower("nonsense", "text")
    with pytest.raises(SpecError):
        load_tower("minilm", "image")
    with pytest.raises(SpecError):
        load_tower("hf_clip", "image")
    with pytest.raises(SpecError):
        load_tower("curate_cfm", "image")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    assert EmbedConfig(model="hf_clip:/x", text_model="minilm").model_for("text") == "minilm"


def test_curate_cfm_loader_with_a_fresh_checkpoint(tmp_path):
    """The project's own contrastive model through `curate.train.export.load_cfm_checkpoint`."""
    train_config = pytest.importorskip("curate.train.config")
    cfm = pytest.importorskip("curate.train.cfm")
    checkpoint = pytest.importorskip("curate.train.checkpoint")
    config = train_config.load_config("cfm_tiny")
    model, tokenizer, _ = cfm.build_cfm(config, texts=TEXTS * 10)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic(
        {
            "kind": "cfm",
            "config": config.model_dump(mode="json"),
            "tokenizer": tokenizer.to_str(),
            "model": model.state_dict(),
        },
        path,
    )
    text = load_tower(f"curate_cfm:{path}", "text", "cpu")
    image = load_tower(f"curate_cfm:{path}", "image", "cpu")
    tv, t_issues = text.embed(TEXTS + [" "])
    iv, i_issues = image.embed([_jpeg(1), b"bad"])
    assert t_issues == [None, None, "empty_text"] and i_issues == [None, "unreadable_image"]
    assert tv.shape[1] == iv.shape[1] == text.dim == image.dim
    np.testing.assert_allclose(np.linalg.norm(tv, axis=1), 1.0, atol=1e-5)
    assert text.model_id == "curate_cfm:checkpoint.pt"
