"""`curate train ...` / `curate eval ...` through argparse, in-process."""

from __future__ import annotations

import argparse
import json

from curate.train.cli import register


def parse(argv):
    parser = argparse.ArgumentParser(prog="curate")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_train_resume_and_eval_cfm(small_out, tmp_path, capsys):
    run = tmp_path / "run"
    args = parse(
        [
            "train",
            "cfm",
            "--config",
            "cfm_tiny",
            "--data",
            str(small_out),
            "--out",
            str(run),
            "--steps",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 4
    args = parse(
        [
            "train",
            "cfm",
            "--config",
            "cfm_tiny",
            "--data",
            str(small_out),
            "--out",
            str(run),
            "--steps",
            "6",
            "--device",
            "cpu",
            "--resume",
            "--eval-split",
            "validation",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "image->text  R@1" in out
    assert '"step": 6' in out
    args = parse(
        [
            "eval",
            "cfm",
            "--checkpoint",
            str(run),
            "--data",
            str(small_out),
            "--split",
            "validation",
            "--device",
            "cpu",
        ]
    )
    assert args.func(args) == 0
    assert (run / "eval_metrics.jsonl").read_text().count("\n") == 2


def test_bad_config_and_wrong_kind_exit_2(small_out, tmp_path, capsys):
    args = parse(
        [
            "train",
            "cfm",
            "--config",
            "no_such_config",
            "--data",
            str(small_out),
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 2
    assert "named config" in capsys.readouterr().out
    args = parse(
        ["train", "mllm", "--config", "cfm_tiny", "--data", str(small_out), "--out", str(tmp_path)]
    )
    assert args.func(args) == 2
    assert "not mllm" in capsys.readouterr().out


def test_train_and_eval_mllm(small_out, trained_cfm, tmp_path, capsys):
    run = tmp_path / "mllm"
    args = parse(
        [
            "train",
            "mllm",
            "--config",
            "mllm_tiny",
            "--data",
            str(small_out),
            "--out",
            str(run),
            "--steps",
            "6",
            "--device",
            "cpu",
            "--vision-checkpoint",
            str(trained_cfm),
        ]
    )
    assert args.func(args) == 0
    args = parse(
        [
            "eval",
            "mllm",
            "--checkpoint",
            str(run),
            "--data",
            str(small_out),
            "--device",
            "cpu",
            "--limit",
            "16",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "zeroed_image" in out and "majority" in out


def test_spec_train_section_trains_and_evaluates(small_out, capsys):
    from curate.train.after_build import run_train_section

    assert run_train_section({"enabled": False}, small_out) == {}
    result = run_train_section(
        {"enabled": True, "steps": 3, "device": "cpu", "run_dir": "train/cfm_section"}, small_out
    )
    assert result["train"]["step"] == 3
    assert result["eval"]["split"] == "validation"
    assert (small_out / "train" / "cfm_section" / "checkpoint.pt").is_file()
    assert "image->text" in capsys.readouterr().out


def test_an_unusable_row_leaves_its_batch_only(small_out):
    """A row without image or text drops out of its own batch; later batches keep their rows,
    so every rank still yields the same number of batches."""
    from curate.shards.training import load_training_batches
    from curate.train.data import MappedBatches

    rows = load_training_batches(small_out, 32, columns=["record_id", "image", "caption"])
    plain = [[r["record_id"] for r in batch] for batch in rows]
    broken = plain[1][3]

    def transform(row):
        return None if row["record_id"] == broken or not row["image"] else row["record_id"]

    batches = list(MappedBatches(rows, transform, list))
    assert len(batches) == len(plain)
    assert batches[1] == [r for r in plain[1] if r != broken]
    assert batches[0] == plain[0] and batches[2:] == plain[2:]
    nothing = list(MappedBatches(rows, lambda row: None, list))
    assert nothing == [{"empty": True}] * len(plain)
