"""CFM evaluation on a held-out split: retrieval Recall@1/5/10 in both directions over
de-duplicated captions, and zero-shot classification with prompt ensembles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from curate.shards.loader import load_shards
from curate.train.config import CFMConfig, ZeroShotTask
from curate.train.data import first_text, pick_text_columns, shard_columns
from curate.train.export import load_cfm_model
from curate.train.metrics import auroc, normalize_text, recall_at_k
from curate.train.runtime import JsonlLog, autocast, resolve_device

KS = (1, 5, 10)


@torch.no_grad()
def embed_split(
    model: Any,
    preprocess: Any,
    data_dir: str | Path,
    split: str,
    text_columns: list[str],
    extra_columns: list[str],
    device: torch.device,
    batch_size: int = 256,
) -> tuple[torch.Tensor, list[str], dict[str, list[Any]]]:
    """Image embeddings, texts and extra column values of every usable row, in shard order."""
    dataset = load_shards(data_dir, split=split, columns=["image", *text_columns, *extra_columns])
    images: list[torch.Tensor] = []
    texts: list[str] = []
    extras: dict[str, list[Any]] = {c: [] for c in extra_columns}
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if pending:
            images.append(model.encode_image(torch.stack(pending).to(device)).float().cpu())
            pending.clear()

    for row in dataset:
        text = first_text(row, text_columns)
        if not row.get("image") or text is None:
            continue
        pending.append(preprocess(row["image"]))
        texts.append(text)
        for column in extra_columns:
            extras[column].append(row.get(column))
        if len(pending) == batch_size:
            flush()
    flush()
    embedded = torch.cat(images) if images else torch.zeros(0, model.config.embed_dim)
    return embedded, texts, extras


@torch.no_grad()
def embed_texts(
    model: Any, tokenizer: Any, texts: list[str], device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenizer(texts[start : start + batch_size])
        out.append(model.encode_text(ids.to(device), mask.to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.embed_dim)


def retrieval(image_emb: torch.Tensor, texts: list[str], text_emb_of: Any) -> dict[str, float]:
    """Recall@K both ways. Captions are de-duplicated after normalisation: several images
    sharing one caption each count that caption as correct, and text->image counts any of
    them as a hit."""
    unique: dict[str, int] = {}
    caption_of_image = [unique.setdefault(normalize_text(t), len(unique)) for t in texts]
    first_text_of: dict[str, str] = {}
    for text in texts:
        first_text_of.setdefault(normalize_text(text), text)
    text_emb = text_emb_of([first_text_of[k] for k in unique])
    scores = (image_emb @ text_emb.t()).numpy()
    i2t = recall_at_k(scores, [{c} for c in caption_of_image], KS)
    images_of_caption: list[set[int]] = [set() for _ in unique]
    for image, caption in enumerate(caption_of_image):
        images_of_caption[caption].add(image)
    t2i = recall_at_k(scores.T.copy(), images_of_caption, KS)
    out = {f"image_to_text_R@{k}": v for k, v in i2t.items()}
    out.update({f"text_to_image_R@{k}": v for k, v in t2i.items()})
    out["images"] = len(texts)
    out["unique_captions"] = len(unique)
    out["chance_image_to_text_R@1"] = 1 / max(len(unique), 1)
    return out


def _class_embeddings(text_emb_of: Any, classes: list[str], templates: list[str]) -> torch.Tensor:
    """Prompt ensemble: mean of the normalised template embeddings, renormalised."""
    rows = []
    for name in classes:
        prompts = [t.format(name) for t in templates]
        rows.append(F.normalize(text_emb_of(prompts).mean(0), dim=-1))
    return torch.stack(rows)


def zero_shot(
    image_emb: torch.Tensor, values: list[Any], task: ZeroShotTask, text_emb_of: Any
) -> dict[str, Any]:
    is_multilabel = any(isinstance(v, list) for v in values)
    result: dict[str, Any] = {"column": task.column, "classes": task.classes}
    if not is_multilabel:
        keep = [i for i, v in enumerate(values) if v in task.classes]
        result["rows"], result["rows_without_class"] = len(keep), len(values) - len(keep)
        if not keep:
            return result
        class_emb = _class_embeddings(text_emb_of, task.classes, task.templates)
        scores = image_emb[keep] @ class_emb.t()
        truth = torch.tensor([task.classes.index(values[i]) for i in keep])
        result["accuracy"] = float((scores.argmax(1) == truth).float().mean())
        result["chance"] = 1 / len(task.classes)
        if len(task.classes) == 2:
            result["auroc"] = auroc((scores[:, 1] - scores[:, 0]).tolist(), (truth == 1).tolist())
        return result
    positive = _class_embeddings(text_emb_of, task.classes, task.templates)
    negative = _class_embeddings(text_emb_of, task.classes, task.negative_templates)
    per_class = {}
    for index, name in enumerate(task.classes):
        margin = image_emb @ positive[index] - image_emb @ negative[index]
        labels = [name in (v or []) for v in values]
        predicted = (margin > 0).tolist()
        per_class[name] = {
            "accuracy": float(np.mean([p == t for p, t in zip(predicted, labels)])),
            "auroc": auroc(margin.tolist(), labels),
            "positives": int(sum(labels)),
        }
    result["rows"] = len(values)
    result["per_class"] = per_class
    aurocs = [c["auroc"] for c in per_class.values() if c["auroc"] is not None]
    result["mean_auroc"] = float(np.mean(aurocs)) if aurocs else None
    return result


def evaluate_cfm(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    split: str = "validation",
    metrics_path: str | Path | None = None,
    device: str = "auto",
    zero_shot_tasks: list[ZeroShotTask] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint; appends one JSON line to `metrics_path` (default
    `<run dir>/eval_metrics.jsonl`) and returns the same record."""
    torch_device = resolve_device(device)
    model, tokenizer, preprocess, state = load_cfm_model(checkpoint, torch_device)
    config = CFMConfig.model_validate(state["config"])
    tasks = config.zero_shot if zero_shot_tasks is None else zero_shot_tasks
    tc = config.train
    available = shard_columns(data_dir, split)
    text_columns = pick_text_columns(available, [tc.text_column, *tc.fallback_text_columns])
    extra = sorted({t.column for t in tasks if t.column in available})
    amp = autocast(torch_device, tc.precision)
    with amp:
        image_emb, texts, extras = embed_split(
            model, preprocess, data_dir, split, text_columns, extra, torch_device
        )

        def text_emb_of(batch: list[str]) -> torch.Tensor:
            return embed_texts(model, tokenizer, batch, torch_device)

        record: dict[str, Any] = {
            "event": "eval_cfm",
            "checkpoint": str(checkpoint),
            "step": state.get("step"),
            "split": split,
            "retrieval": retrieval(image_emb, texts, text_emb_of),
        }
        record["zero_shot"] = [
            zero_shot(image_emb, extras[t.column], t, text_emb_of)
            if t.column in extras
            else {"column": t.column, "error": "column_absent"}
            for t in tasks
        ]
    checkpoint_path = Path(checkpoint)
    run_dir = checkpoint_path if checkpoint_path.is_dir() else checkpoint_path.parent
    JsonlLog(metrics_path or run_dir / "eval_metrics.jsonl", echo=False).write(record)
    return record


def summary_lines(record: dict[str, Any]) -> list[str]:
    r = record["retrieval"]
    lines = [
        f"CFM eval on {record['split']} ({r['images']} images, {r['unique_captions']} unique "
        f"captions, step {record['step']})",
        "  image->text  R@1 {:.3f}  R@5 {:.3f}  R@10 {:.3f}   (chance R@1 {:.3f})".format(
            r["image_to_text_R@1"],
            r["image_to_text_R@5"],
            r["image_to_text_R@10"],
            r["chance_image_to_text_R@1"],
        ),
        "  text->image  R@1 {:.3f}  R@5 {:.3f}  R@10 {:.3f}".format(
            r["text_to_image_R@1"], r["text_to_image_R@5"], r["text_to_image_R@10"]
        ),
    ]
    for task in record.get("zero_shot", []):
        if "accuracy" in task:
            extra = f"  AUROC {task['auroc']:.3f}" if task.get("auroc") is not None else ""
            lines.append(
                f"  zero-shot {task['column']}: accuracy {task['accuracy']:.3f} "
                f"(chance {task['chance']:.3f}){extra}"
            )
        elif "mean_auroc" in task:
            lines.append(f"  zero-shot {task['column']}: mean AUROC {task['mean_auroc']}")
        else:
            lines.append(f"  zero-shot {task['column']}: {task.get('error', 'no labelled rows')}")
    return lines
