"""MLLM evaluation: greedy answers on a held-out split of the instruction table, scored with
LLaVA-Med's measures (closed accuracy, open token recall/F1) and BLEU / ROUGE-L for free-text
generation, always beside two baselines: the same model with the image features zeroed, and
the majority answer per task from the training split. A yes/no model can score well while
ignoring the image; the baselines show whether it does."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.errors import InputError
from curate.shards.loader import load_shards
from curate.train import checkpoint as ckpt
from curate.train.config import MLLMConfig
from curate.train.metrics import (
    choice_correct,
    closed_correct,
    corpus_bleu,
    normalize_text,
    rouge_l,
    token_f1,
    token_recall,
)
from curate.train.mllm import build_mllm, generation_prompt, references_images, turns_of
from curate.train.runtime import JsonlLog, autocast, resolve_device

COLUMNS = ["image", "conversations", "answer", "answer_type", "task"]


def load_mllm(path: str | Path, device: torch.device):
    path = Path(path)
    if path.is_dir():
        path = path / ckpt.CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(f"no MLLM checkpoint at {path}")
    state = ckpt.load(path)
    if state.get("kind") != "mllm":
        raise InputError(f"{path} is not an MLLM checkpoint (kind={state.get('kind')!r})")
    config = MLLMConfig.model_validate(state["config"])
    model, tokenizer, preprocess, _ = build_mllm(config, state)
    return model.to(device).eval(), tokenizer, preprocess, config, state


def reference_of(row: dict[str, Any]) -> str:
    answer = row.get("answer")
    if answer:
        return answer
    rounds = turns_of(row.get("conversations") or [])
    return rounds[-1][1] if rounds else ""


def majority_answers(data_dir: str | Path, split: str, table: str) -> dict[str, str]:
    """Most frequent normalised answer per task in the training split (ties: alphabetical)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in load_shards(
        data_dir, split=split, columns=["conversations", "answer", "task"], table=table
    ):
        counts[row.get("task") or ""][normalize_text(reference_of(row))] += 1
    return {
        task: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for task, c in counts.items()
    }


def score(predictions: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_type: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_type[row.get("answer_type") or "open"].append(index)
    out: dict[str, Any] = {}
    for kind in ("closed", "choice"):
        if by_type.get(kind):
            correct = choice_correct if kind == "choice" else closed_correct
            hits = [correct(predictions[i], reference_of(rows[i])) for i in by_type[kind]]
            out[f"{kind}_accuracy"] = float(np.mean(hits))
            out[f"{kind}_count"] = len(hits)
    if by_type.get("open"):
        idx = by_type["open"]
        out["open_recall"] = float(
            np.mean([token_recall(predictions[i], reference_of(rows[i])) for i in idx])
        )
        out["open_f1"] = float(
            np.mean([token_f1(predictions[i], reference_of(rows[i])) for i in idx])
        )
        out["open_count"] = len(idx)
    if by_type.get("generation"):
        idx = by_type["generation"]
        preds = [predictions[i] for i in idx]
        refs = [reference_of(rows[i]) for i in idx]
        out["bleu"] = corpus_bleu(preds, refs)
        out["rouge_l"] = float(np.mean([rouge_l(p, r) for p, r in zip(preds, refs)]))
        out["generation_count"] = len(idx)
    per_task: dict[str, list[bool]] = defaultdict(list)
    for index, row in enumerate(rows):
        if row.get("answer_type") in ("closed", "choice"):
            correct = choice_correct if row.get("answer_type") == "choice" else closed_correct
            per_task[row.get("task") or ""].append(correct(predictions[index], reference_of(row)))
    out["task_accuracy"] = {t: float(np.mean(v)) for t, v in sorted(per_task.items())}
    return out


def evaluate_mllm(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    split: str = "validation",
    table: str = "instructions",
    metrics_path: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    limit: int | None = None,
) -> dict[str, Any]:
    torch_device = resolve_device(device)
    model, tokenizer, preprocess, config, state = load_mllm(checkpoint, torch_device)
    rows = []
    for row in load_shards(
        data_dir,
        split=split,
        columns=COLUMNS,
        table=table,
        attach_images=references_images(table),
    ):
        if row.get("image") and turns_of(row.get("conversations") or []):
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise InputError(f"no evaluable rows in {table}/{split}")
    predictions: dict[str, list[str]] = {"model": [], "zeroed_image": []}
    amp = autocast(torch_device, config.train.precision)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        images = torch.stack([preprocess(r["image"]) for r in chunk]).to(torch_device)
        prompts = [
            generation_prompt(tokenizer, config.model.system_prompt, r["conversations"])[0]
            for r in chunk
        ]
        for name, zero in (("model", False), ("zeroed_image", True)):
            with amp:
                out = model.generate(images, prompts, config.max_new_tokens, zero_image=zero)
            predictions[name].extend(tokenizer.decode(ids) for ids in out)
    majority = majority_answers(data_dir, config.train.train_split, table)
    predictions["majority"] = [majority.get(r.get("task") or "", "") for r in rows]
    record: dict[str, Any] = {
        "event": "eval_mllm",
        "checkpoint": str(checkpoint),
        "step": state.get("step"),
        "split": split,
        "rows": len(rows),
        "results": {name: score(preds, rows) for name, preds in predictions.items()},
        "examples": [
            {
                "question": turns_of(r["conversations"])[-1][0],
                "answer": reference_of(r),
                "model": predictions["model"][i],
                "zeroed_image": predictions["zeroed_image"][i],
            }
            for i, r in enumerate(rows[:5])
        ],
    }
    checkpoint_path = Path(checkpoint)
    run_dir = checkpoint_path if checkpoint_path.is_dir() else checkpoint_path.parent
    JsonlLog(metrics_path or run_dir / "eval_metrics.jsonl", echo=False).write(record)
    return record


def summary_lines(record: dict[str, Any]) -> list[str]:
    lines = [f"MLLM eval on {record['split']} ({record['rows']} questions, step {record['step']})"]
    keys = ["closed_accuracy", "choice_accuracy", "open_recall", "open_f1", "bleu", "rouge_l"]
    header = "  {:<14}".format("") + "".join(f"{k:>17}" for k in keys)
    lines.append(header)
    for name, result in record["results"].items():
        cells = "".join(f"{result[k]:>17.3f}" if k in result else f"{'-':>17}" for k in keys)
        lines.append(f"  {name:<14}{cells}")
    return lines
