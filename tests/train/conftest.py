"""Shared, session-scoped training fixtures: synthetic shards, one trained CFM and one MLLM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_data import write_synthetic_shards  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spinning.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synthetic_out(tmp_path_factory) -> Path:
    return write_synthetic_shards(
        tmp_path_factory.mktemp("synthetic") / "out", train=2000, validation=300
    )


@pytest.fixture(scope="session")
def small_out(tmp_path_factory) -> Path:
    """A small build for mechanics tests (resume, CLI)."""
    return write_synthetic_shards(
        tmp_path_factory.mktemp("small") / "out", train=256, validation=64, row_group_rows=32
    )


@pytest.fixture(scope="session")
def trained_cfm(synthetic_out, tmp_path_factory) -> Path:
    from curate.train.cfm import train_cfm
    from curate.train.config import load_config

    config = load_config("cfm_tiny")
    config.train.device = "cpu"
    run = tmp_path_factory.mktemp("cfm_run")
    train_cfm(config, synthetic_out, run)
    return run / "checkpoint.pt"


@pytest.fixture(scope="session")
def trained_mllm(synthetic_out, trained_cfm, tmp_path_factory) -> Path:
    from curate.train.config import load_config
    from curate.train.mllm_train import train_mllm

    config = load_config("mllm_tiny")
    config.model.vision_checkpoint = str(trained_cfm)
    config.train.device = "cpu"
    run = tmp_path_factory.mktemp("mllm_run")
    train_mllm(config, synthetic_out, run)
    return run / "checkpoint.pt"
