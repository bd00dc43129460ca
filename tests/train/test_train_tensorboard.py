"""`train.tensorboard: true` writes TensorBoard event files beside `train_log.jsonl`, holding the
same scalars (the `tensorboard` extra; skipped where it is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.train.cli import register

pytest.importorskip("tensorboard")


def test_tensorboard_events_hold_the_logged_losses(small_out: Path, tmp_path: Path) -> None:
    import argparse

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    configs = Path(__file__).parents[2] / "src" / "curate" / "train" / "configs"
    config = json.loads((configs / "cfm_tiny.json").read_text())
    config["train"]["tensorboard"] = True
    config_path = tmp_path / "cfm_tb.json"
    config_path.write_text(json.dumps(config))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    run = tmp_path / "run"
    argv = ["train", "cfm", "--config", str(config_path), "--data", str(small_out)]
    args = parser.parse_args([*argv, "--out", str(run), "--steps", "3", "--device", "cpu"])
    assert args.func(args) == 0
    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in logged if "loss" in r and "step" in r}
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = {e.step: e.value for e in events.Scalars("train/loss")}
    assert losses and scalars.keys() == losses.keys()
    assert all(abs(scalars[s] - losses[s]) < 1e-5 for s in losses)
