"""The MLLM visibly learns on the generated lesion cohort: built with the `demo_cohort` spec
(caption attribute questions), a short CFM run as the frozen vision tower and a short MLLM run,
the held-out questions are answered far better than with the image zeroed and than the
majority answer. If the image never reached the LM, model and zeroed-image would tie."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.cli import main
from curate.demo.cohort import generate_pmc_cohort
from curate.train.cfm import train_cfm
from curate.train.config import load_config
from curate.train.mllm_eval import evaluate_mllm, summary_lines
from curate.train.mllm_train import train_mllm

pytestmark = pytest.mark.slow


def build_small_cohort(tmp_path: Path, articles: int) -> Path:
    generate_pmc_cohort(str(tmp_path / "generated"), seed=1, articles=articles)
    out = tmp_path / "cohort"
    source = f"pmc_cohort={tmp_path / 'generated' / 'folder'}"
    argv = ["build", "--spec", "demo_cohort", "--out", str(out), "--source", source]
    assert main([*argv, "--running-mode", "in_memory"]) == 0
    return out


def test_mllm_beats_zeroed_image_and_majority_on_held_out_cohort_questions(tmp_path):
    out = build_small_cohort(tmp_path, articles=240)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["instruction_splits"]["validation"] >= 200

    cfm = load_config("cfm_cohort")
    cfm.train.steps, cfm.train.device = 150, "cpu"
    train_cfm(cfm, out, tmp_path / "cfm")

    mllm = load_config("mllm_cohort")
    mllm.model.vision_checkpoint = str(tmp_path / "cfm")
    mllm.train.device = "cpu"
    plain, chat = mllm.stages
    plain.steps, chat.steps = 40, 600
    train_mllm(mllm, out, tmp_path / "mllm")

    record = evaluate_mllm(tmp_path / "mllm", out, split="validation", device="cpu")
    results = record["results"]
    model, zeroed, majority = (results[k] for k in ("model", "zeroed_image", "majority"))
    print("\n".join(summary_lines(record)))
    assert record["rows"] == manifest["instruction_splits"]["validation"]
    assert model["choice_accuracy"] >= zeroed["choice_accuracy"] + 0.2
    assert model["choice_accuracy"] >= majority["choice_accuracy"] + 0.2
    # the attributes a short run sees first: from the image, not from the question
    accuracy, without_image = model["task_accuracy"], zeroed["task_accuracy"]
    assert accuracy["attribute.modality"] >= 0.9
    assert accuracy["attribute.modality"] >= without_image["attribute.modality"] + 0.3
    assert accuracy["attribute.brightness"] >= without_image["attribute.brightness"] + 0.25
