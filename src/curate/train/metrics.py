"""Evaluation measures implemented here (no downloads): retrieval recall with deterministic
tie-breaking, AUROC, and the text measures LLaVA-Med reports (closed accuracy, open token
recall/F1) plus BLEU and ROUGE-L."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def normalize_text(text: str) -> str:
    return " ".join(_TOKEN.findall((text or "").lower()))


def words(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Column order per row, best first; ties go to the lower index (stable sort)."""
    return np.argsort(-scores, axis=1, kind="stable")


def recall_at_k(scores: np.ndarray, correct: list[set[int]], ks: Sequence[int]) -> dict[int, float]:
    """Fraction of rows whose top-k columns contain a correct one."""
    order = rank_order(scores)
    hits = {k: 0 for k in ks}
    for row, targets in enumerate(correct):
        ranked = order[row]
        for k in ks:
            if targets.intersection(ranked[:k].tolist()):
                hits[k] += 1
    rows = max(len(correct), 1)
    return {k: hits[k] / rows for k in ks}


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Mann-Whitney AUROC with average ranks for ties; None when one class is absent."""
    score = np.asarray(scores, dtype=np.float64)
    label = np.asarray(labels, dtype=bool)
    positives, negatives = int(label.sum()), int((~label).sum())
    if not positives or not negatives:
        return None
    order = np.argsort(score, kind="stable")
    sorted_scores = score[order]
    ranks = np.empty(len(score), dtype=np.float64)
    start = 0
    while start < len(score):
        end = start
        while end + 1 < len(score) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def closed_correct(prediction: str, answer: str) -> bool:
    """The prediction's first words equal the answer's words (yes/no, option text)."""
    target = words(answer)
    return bool(target) and words(prediction)[: len(target)] == target


_OPTION = re.compile(r"\s*\(?([A-Za-z])[.):]\s*(.*)", re.DOTALL)
_LETTER_REPLY = re.compile(r"\s*\(?([A-Za-z])(?:[.):](?:\s.*)?|\s*)$", re.DOTALL)


def choice_correct(prediction: str, answer: str) -> bool:
    """A multiple-choice reply is right when it gives the whole option ("C. pneumonia"), its
    text ("pneumonia") or its letter: alone ("c", "(C)") or marked and followed by anything
    ("c.", "C) pneumonia"). An unmarked letter followed by words ("a chest film") is a word,
    not option A."""
    if closed_correct(prediction, answer):
        return True
    option = _OPTION.match(answer or "")
    if option is None:
        return False
    letter, text = option.group(1).lower(), words(option.group(2))
    if text and words(prediction)[: len(text)] == text:
        return True
    reply = _LETTER_REPLY.match(prediction or "")
    return reply is not None and reply.group(1).lower() == letter


def token_recall(prediction: str, answer: str) -> float:
    """LLaVA-Med's open-question recall: share of answer tokens found in the prediction."""
    target = words(answer)
    if not target:
        return 0.0
    predicted = set(words(prediction))
    return sum(1 for t in target if t in predicted) / len(target)


def token_f1(prediction: str, answer: str) -> float:
    predicted, target = Counter(words(prediction)), Counter(words(answer))
    common = sum((predicted & target).values())
    if not common:
        return 0.0
    precision = common / sum(predicted.values())
    recall = common / sum(target.values())
    return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(predictions: list[str], references: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 (Papineni et al.) with one reference per sample, uniform weights, the
    brevity penalty, and add-one smoothing of higher-order precisions (Lin & Och) so short
    corpora do not collapse to zero."""
    matches = [0] * max_n
    totals = [0] * max_n
    pred_len = ref_len = 0
    for prediction, reference in zip(predictions, references):
        p, r = words(prediction), words(reference)
        pred_len += len(p)
        ref_len += len(r)
        for n in range(1, max_n + 1):
            pn, rn = _ngrams(p, n), _ngrams(r, n)
            matches[n - 1] += sum((pn & rn).values())
            totals[n - 1] += max(len(p) - n + 1, 0)
    if pred_len == 0:
        return 0.0
    log_precision = 0.0
    for n in range(max_n):
        if n == 0:
            if matches[0] == 0:
                return 0.0
            log_precision += math.log(matches[0] / totals[0])
        else:
            log_precision += math.log((matches[n] + 1) / (totals[n] + 1))
    brevity = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return brevity * math.exp(log_precision / max_n)


def rouge_l(prediction: str, reference: str, beta: float = 1.2) -> float:
    """ROUGE-L F-measure from the longest common subsequence (Lin 2004; beta as in pycocoevalcap)."""
    p, r = words(prediction), words(reference)
    if not p or not r:
        return 0.0
    previous = [0] * (len(r) + 1)
    for token in p:
        current = [0]
        for j, ref_token in enumerate(r):
            current.append(
                previous[j] + 1 if token == ref_token else max(previous[j + 1], current[j])
            )
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
