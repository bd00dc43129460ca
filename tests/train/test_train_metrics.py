"""Measures computed here, checked against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate.train.evaluate import retrieval
from curate.train.metrics import (
    auroc,
    closed_correct,
    corpus_bleu,
    rank_order,
    recall_at_k,
    rouge_l,
    token_f1,
    token_recall,
)


def test_ties_break_towards_the_lower_index():
    scores = np.array([[0.5, 0.5, 0.5], [0.1, 0.9, 0.9]])
    assert rank_order(scores).tolist() == [[0, 1, 2], [1, 2, 0]]
    assert recall_at_k(scores, [{1}, {2}], (1, 2)) == {1: 0.0, 2: 1.0}


def test_shared_captions_count_as_correct_for_each_image():
    image_emb = torch.eye(3)
    texts = ["A red circle", "a red  circle", "a blue square"]
    table = {
        "a red circle": torch.tensor([1.0, 0.0, 0.0]),
        "a blue square": torch.tensor([0.0, 0.0, 1.0]),
    }

    def embed(batch):
        return torch.stack([table[" ".join(t.lower().split())] for t in batch])

    out = retrieval(image_emb, texts, embed)
    assert out["unique_captions"] == 2
    # image 1 scores 0 with both captions: the tie goes to caption 0, its own.
    assert out["image_to_text_R@1"] == 1.0
    assert out["text_to_image_R@1"] == 1.0
    assert out["chance_image_to_text_R@1"] == 0.5


def test_auroc_matches_hand_computation():
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auroc([0.5, 0.5], [False, True]) == 0.5
    assert auroc([0.2, 0.3], [True, True]) is None


def test_closed_and_open_measures():
    assert closed_correct("Yes, it is.", "yes")
    assert not closed_correct("no", "yes")
    assert not closed_correct("", "yes")
    assert token_recall("a large circle", "circle") == 1.0
    assert token_recall("square", "red circle") == 0.0
    assert token_f1("red circle here", "red circle") == pytest.approx(0.8)


def test_bleu_and_rouge_l():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert corpus_bleu(["dog"], ["the cat"]) == 0.0
    # ROUGE-L: LCS("a b c d", "a c d e") = 3, P = R = 3/4.
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("", "a") == 0.0


def test_zero_shot_multilabel_scores_each_class_against_its_negation():
    from curate.train.config import ZeroShotTask
    from curate.train.evaluate import zero_shot

    # Axis 0 means "effusion", axis 1 "no effusion"; prompts map onto those axes.
    def embed(prompts):
        rows = [[0.0, 1.0] if p.startswith(("no ", "without ")) else [1.0, 0.0] for p in prompts]
        return torch.tensor(rows)

    images = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.9, 0.3], [0.1, 0.8]]), dim=-1
    )
    values = [["effusion"], [], ["effusion", "edema"], ["edema"]]
    task = ZeroShotTask(column="labels", classes=["effusion"])
    result = zero_shot(images, values, task, embed)
    assert result["rows"] == 4
    assert result["per_class"]["effusion"] == {"accuracy": 1.0, "auroc": 1.0, "positives": 2}
    assert result["mean_auroc"] == 1.0


@pytest.mark.parametrize(
    ("prediction", "right"),
    [
        ("C. pneumonia", True),
        ("c.", True),
        ("C", True),
        ("(c)", True),
        ("c) pneumonia", True),
        ("pneumonia", True),
        ("b.", False),
        ("a", False),
        ("c pneumothorax", False),  # an unmarked letter then words is not option C
        ("effusion", False),
    ],
)
def test_choice_answers_accept_the_letter_the_text_or_both(prediction, right):
    from curate.train.metrics import choice_correct

    assert choice_correct(prediction, "C. pneumonia") is right


def test_an_article_is_not_read_as_option_a():
    from curate.train.metrics import choice_correct

    assert not choice_correct("a chest film", "A. pneumonia")
    assert choice_correct("A.", "A. pneumonia")
