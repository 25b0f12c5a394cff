"""The paper's CNNs and the vision Transformer as workloads: built as published, trained
emulated with every GEMM operand quantized (counted), attention matmuls included."""

from __future__ import annotations

from collections import Counter

import pytest
from quantizations import step_quantizations
from torch import nn

from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.models import build_model, count_parameters
from hbfp_dse.training.trainer import train

pytestmark = pytest.mark.usefixtures("eager_quantizer")


def quantized_operands(
    name: str, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, Counter[str]]:
    """Quantizations in one emulated training step (reduction blocking: 6 per GEMM), and the
    model's GEMMs by kind before conversion."""
    config = TrainConfig.model_validate({"model": name, "dataset": dataset, "schedule": "hbfp4"})
    gemms = Counter(
        type(m).__name__
        for m in build_model(name, 10, 3, 32).modules()
        if isinstance(m, nn.Conv2d | nn.Linear | nn.MultiheadAttention)
    )
    calls = step_quantizations(config, monkeypatch)
    assert {fmt.name for fmt in calls} == {"hbfp4"}
    return len(calls), gemms


def expected_calls(gemms: int) -> int:
    """6 operands a GEMM; the first layer's input needs no gradient (its dY and W roles for
    dX are not quantized)."""
    return 6 * gemms - 2


def test_every_gemm_of_the_vision_transformer_is_quantized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls, gemms = quantized_operands("vit", "cifar10", monkeypatch)
    # Patch embedding, per block 4 projections + Q·Kᵀ + P·V in attention and 2 MLP layers,
    # the head: each GEMM's 6 operands.
    blocks = gemms["MultiheadAttention"]
    assert blocks == 4
    assert gemms["Conv2d"] == 1
    assert calls == expected_calls(1 + blocks * (4 + 2 + 2) + 1)


@pytest.mark.parametrize(("name", "layers_count"), [("densenet40", 40), ("resnet74", 74)])
def test_every_gemm_of_the_papers_cnns_is_quantized(
    name: str, layers_count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, gemms = quantized_operands(name, "cifar10", monkeypatch)
    assert sum(gemms.values()) == layers_count
    assert calls == expected_calls(layers_count)


def test_densenet40_is_the_published_network() -> None:
    # Huang et al. 2017, Table 2: DenseNet (L=40, k=12), 1.0M parameters; 16 + 3 x 12 x 12
    # channels reach the classifier; 36 dense layers, 2 transitions, the first convolution.
    model = build_model("densenet40", 10, 3, 32)
    assert count_parameters(model) == 1_019_722
    assert model.fc.in_features == 16 + 3 * 12 * 12
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs].count((3, 3)) == 1 + 36
    assert [c.kernel_size for c in convs].count((1, 1)) == 2


@pytest.mark.parametrize(("name", "dataset"), [("vit", "mnist-5k"), ("densenet40", "mnist-5k")])
def test_the_new_workloads_train_emulated(name: str, dataset: str) -> None:
    config = TrainConfig.model_validate(
        {
            "model": name,
            "dataset": dataset,
            "train_size": 64,
            "test_size": 32,
            "epochs": 1,
            "batch_size": 32,
            "schedule": "booster",
            "device": "cpu",
        }
    )
    result = train(config)
    assert result.status == "done"
    assert 0.0 <= result.epochs[0].test_acc <= 1.0
