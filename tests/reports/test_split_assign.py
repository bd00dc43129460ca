"""Group-level split assignment: deterministic, stable, ratios honoured, presets win."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from curate.errors import SpecError
from curate.split import assign_split, resolve_split

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_no_group_spans_two_splits_and_ratios_hold_on_10k_keys():
    seen: dict[str, set[str]] = defaultdict(set)
    # several records per patient, in shuffled order: each patient must land in one split
    records = [(f"patient-{i % 10_000}", n) for n in range(3) for i in range(10_000)]
    for key, _ in records:
        seen[key].add(assign_split(key, 7, RATIOS))
    assert all(len(splits) == 1 for splits in seen.values())
    counts = Counter(next(iter(s)) for s in seen.values())
    assert sum(counts.values()) == 10_000
    # binomial sd for p=0.1, n=10k is 30; allow ~5 sd
    assert abs(counts["train"] - 8000) < 200
    assert abs(counts["validation"] - 1000) < 150
    assert abs(counts["test"] - 1000) < 150


def test_stable_across_python_processes_and_ratio_order():
    keys = ["10000032", "10000764", "p10000898", "PMC123456"]
    here = [assign_split(k, 0, RATIOS) for k in keys]
    code = (
        "from curate.split import assign_split;"
        f"print(','.join(assign_split(k, 0, {{'test': 0.1, 'train': 0.8, 'validation': 0.1}}) for k in {keys!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert out.stdout.strip().split(",") == here


def test_seed_changes_assignment_and_unnormalised_ratios_work():
    keys = [str(i) for i in range(2000)]
    a = [assign_split(k, 0, RATIOS) for k in keys]
    b = [assign_split(k, 1, RATIOS) for k in keys]
    assert a != b
    assert [assign_split(k, 0, {"train": 8, "validation": 1, "test": 1}) for k in keys] == a
    assert {assign_split(k, 3, {"train": 1.0, "test": 0.0}) for k in keys} == {"train"}


def test_preset_split_wins_and_missing_group_is_an_error():
    assert (
        resolve_split({"split": "validation", "subject_id": "1"}, "subject_id", 0, RATIOS)
        == "validation"
    )
    assert resolve_split(
        {"split": None, "subject_id": "1"}, "subject_id", 0, RATIOS
    ) == assign_split("1", 0, RATIOS)
    with pytest.raises(SpecError):
        resolve_split({"split": None, "record_id": "r"}, "subject_id", 0, RATIOS)


@pytest.mark.parametrize(
    "ratios", [{}, {"train": -1.0}, {"train": 0.0, "test": 0.0}, {"train": float("nan")}]
)
def test_bad_ratios(ratios):
    with pytest.raises(SpecError):
        assign_split("k", 0, ratios)
