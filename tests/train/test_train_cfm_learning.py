"""The CFM learns: held-out retrieval far above chance, zero-shot above chance."""

from __future__ import annotations

import json

from curate.train.config import ZeroShotTask
from curate.train.evaluate import evaluate_cfm, summary_lines


def test_cfm_retrieval_is_at_least_ten_times_chance(trained_cfm, synthetic_out, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    task = ZeroShotTask(column="modality", classes=["circle", "square", "triangle"])
    record = evaluate_cfm(
        trained_cfm,
        synthetic_out,
        split="validation",
        metrics_path=metrics,
        device="cpu",
        zero_shot_tasks=[task],
    )
    retrieval = record["retrieval"]
    assert retrieval["images"] == 300
    assert retrieval["unique_captions"] <= 48
    chance = retrieval["chance_image_to_text_R@1"]
    assert chance == 1 / retrieval["unique_captions"]
    assert retrieval["image_to_text_R@1"] >= 10 * chance
    assert retrieval["text_to_image_R@1"] >= 10 * (1 / retrieval["unique_captions"])
    assert (
        retrieval["image_to_text_R@1"]
        <= retrieval["image_to_text_R@5"]
        <= retrieval["image_to_text_R@10"]
    )
    zero_shot = record["zero_shot"][0]
    assert zero_shot["rows"] == 300
    assert zero_shot["accuracy"] > 2 * zero_shot["chance"]
    lines = metrics.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["retrieval"] == retrieval
    summary = "\n".join(summary_lines(record))
    assert "image->text  R@1" in summary and "zero-shot modality" in summary
