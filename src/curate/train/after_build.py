"""The build spec's `train` section: a short CFM run on the shards a build just wrote, then a
held-out evaluation (how `make demo` ends by proving its data trains a model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.train.config import CFMConfig, TrainSection, load_config


def run_train_section(
    section: TrainSection | dict[str, Any], out_dir: str | Path
) -> dict[str, Any]:
    """Train `section.config` on OUT's train split into OUT/<run_dir>, evaluate on
    `section.eval_split`, print the summary; returns {"train": ..., "eval": ...}.
    Does nothing (returns {}) when the section is disabled."""
    from curate.train.cfm import train_cfm
    from curate.train.evaluate import evaluate_cfm, summary_lines

    section = section if isinstance(section, TrainSection) else TrainSection.model_validate(section)
    if not section.enabled:
        return {}
    config = load_config(section.config)
    if not isinstance(config, CFMConfig):
        raise TypeError(f"train section config {section.config!r} must be a CFM config")
    updates: dict[str, Any] = {"device": section.device}
    if section.steps is not None:
        updates["steps"] = section.steps
    config = config.model_copy(update={"train": config.train.model_copy(update=updates)})
    run_dir = Path(out_dir) / section.run_dir
    trained = train_cfm(config, out_dir, run_dir, resume=True)
    record = evaluate_cfm(
        trained["checkpoint"], out_dir, split=section.eval_split, device=section.device
    )
    print("\n".join(summary_lines(record)))
    return {"train": trained, "eval": record}
