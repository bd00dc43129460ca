"""Precision policy: bf16 where the GPU has it, fp16 + GradScaler where not, fp32 on CPU."""

from __future__ import annotations

import pytest
import torch

from curate.train.runtime import Precision, resolve_precision

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "asked", "bf16_supported", "expected"),
    [
        (CPU, "auto", False, "fp32"),
        (CPU, "bf16", True, "fp32"),
        (CPU, "fp16", True, "fp32"),
        (CUDA, "auto", True, "bf16"),
        (CUDA, "bf16", True, "bf16"),
        (CUDA, "auto", False, "fp16"),  # V100, T4
        (CUDA, "bf16", False, "fp16"),
        (CUDA, "fp16", True, "fp16"),
        (CUDA, "fp32", True, "fp32"),
    ],
)
def test_precision_policy(monkeypatch, device, asked, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert resolve_precision(device, asked) == expected


def test_cpu_training_steps_in_full_precision_without_a_scaler():
    precision = Precision(CPU, "auto")
    assert precision.scaler is None and precision.state_dict() is None
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    with precision.autocast():
        loss = (weight * torch.tensor([1.0, 2.0])).sum()
    precision.backward(loss)
    precision.step(optimizer, [weight], clip=None)
    assert weight.tolist() == [0.5, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_scaler_state_round_trips_on_gpu():
    precision = Precision(CUDA, "fp16")
    assert precision.scaler is not None
    weight = torch.nn.Parameter(torch.ones(2, device="cuda"))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    with precision.autocast():
        loss = (weight @ torch.tensor([1.0, 2.0], device="cuda")).float()
    precision.backward(loss)
    precision.step(optimizer, [weight], clip=1.0)
    again = Precision(CUDA, "fp16")
    again.load_state_dict(precision.state_dict())
    assert again.scaler.get_scale() == precision.scaler.get_scale()
