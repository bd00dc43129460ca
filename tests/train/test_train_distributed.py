"""Two processes through torchrun (gloo on CPU), accumulation on: equal to one process with
the same global batch, and killed after a checkpoint then resumed equal to an uninterrupted
run. Also: resume stays exact with dropout on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from curate.train.cfm import train_cfm
from curate.train.config import load_config

RUNNER = Path(__file__).resolve().parent / "ddp_runner.py"


def torchrun(nproc: int, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
    torchrun_bin = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun_bin is None:
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        torchrun_bin,
        "--standalone",
        f"--nproc_per_node={nproc}",
        "--monitor_interval=0.2",
        str(RUNNER),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if expect_ok and done.returncode != 0:
        raise AssertionError(f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    if not expect_ok:
        assert done.returncode != 0, "the run was meant to be killed"
    return done


def losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "train_log.jsonl").read_text().splitlines()]


def cfm_config(tmp_path: Path, **train) -> Path:
    config = load_config("cfm_tiny")
    settings = dict(
        device="cpu",
        steps=20,
        batch_size=32,
        accum_steps=2,
        warmup_steps=3,
        log_every=1,
        checkpoint_every=4,
        shuffle_buffer_rows=64,
    )
    settings.update(train)
    config.train = config.train.model_copy(update=settings)
    path = tmp_path / "cfm.json"
    path.write_text(config.model_dump_json())
    return path


def test_cfm_two_ranks_with_accumulation_match_one_rank_and_resume_exactly(small_out, tmp_path):
    config = cfm_config(tmp_path)
    data = str(small_out)
    train_cfm(load_config(str(config)), small_out, tmp_path / "one")  # one process, no group
    torchrun(2, "cfm", str(config), data, str(tmp_path / "two"))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 20
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-4, (one, two)
    # Every rank trained (the loss moved) and only rank 0 logged: one line per step.
    assert one[-1] < one[0]

    killed = tmp_path / "killed"
    torchrun(2, "cfm", str(config), data, str(killed), "--die-after-step", "8", expect_ok=False)
    state = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert state["step"] == 8 and len(state["rng_per_rank"]) == 2
    assert state["rows_in_epoch_per_rank"] == [8 * 16, 8 * 16]
    torchrun(2, "cfm", str(config), data, str(killed), "--resume")
    assert losses(killed) == two  # steps 1-8 before the kill, 9-20 after it: bit for bit
    a = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    b = torch.load(killed / "checkpoint.pt", weights_only=False)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_mllm_two_ranks_killed_after_a_checkpoint_resume_exactly(small_out, tmp_path):
    vision = tmp_path / "vision"
    train_cfm(cfm_config(tmp_path, steps=2, accum_steps=1), small_out, vision)
    config = load_config("mllm_tiny")
    config.model.vision_checkpoint = str(vision / "checkpoint.pt")
    config.train = config.train.model_copy(
        update=dict(
            device="cpu",
            batch_size=16,
            warmup_steps=1,
            log_every=1,
            checkpoint_every=3,
            shuffle_buffer_rows=64,
        )
    )
    config.stages[0].steps = 3
    config.stages[1].steps = 5
    path = tmp_path / "mllm.json"
    path.write_text(config.model_dump_json())
    data = str(small_out)
    torchrun(2, "mllm", str(path), data, str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    torchrun(2, "mllm", str(path), data, str(killed), "--die-after-step", "6", expect_ok=False)
    state = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert (state["stage"], state["stage_step"], state["step"]) == (1, 3, 6)
    torchrun(2, "mllm", str(path), data, str(killed), "--resume")
    straight = losses(tmp_path / "straight")
    assert len(straight) == 8 and losses(killed) == straight
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(killed / "checkpoint.pt", weights_only=False)
    for part in ("projector", "lm"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), (part, name)


def test_cfm_resume_is_exact_with_dropout_and_random_crops(small_out, tmp_path):
    config = load_config("cfm_tiny")
    config.model.vision.dropout = 0.2
    config.model.text.dropout = 0.2
    config.model.vision.train_crop_scale = (0.5, 1.0)
    config.train = config.train.model_copy(
        update=dict(device="cpu", steps=8, batch_size=32, warmup_steps=2, log_every=1)
    )
    straight = train_cfm(config, small_out, tmp_path / "straight")
    train_cfm(config, small_out, tmp_path / "resumed", stop_at=3)
    resumed = train_cfm(config, small_out, tmp_path / "resumed", resume=True)
    assert resumed["loss"] == straight["loss"]
    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
    # Dropout is on: the same run without it trains differently.
    config.model.vision.dropout = config.model.text.dropout = 0.0
    plain = train_cfm(config, small_out, tmp_path / "plain")
    assert plain["loss"] != straight["loss"]
