"""MACs per layer and GEMM, checked against counts made by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hbfp_dse.cost import GEMM_ROLES, CostError, count_macs
from hbfp_dse.emulation import QuantSpec, convert
from hbfp_dse.errors import UserError


def small_cnn() -> nn.Sequential:
    """Two [3x3 conv (pad 1), BN, ReLU, 2x2 max-pool] layers with 16 and 32 channels, a linear."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


# Per sample, 28x28x1 input.
CONV1 = 28 * 28 * 16 * 1 * 9  # 112,896
CONV2 = 14 * 14 * 32 * 16 * 9  # 903,168
FC = 1568 * 10  # 15,680


@pytest.mark.parametrize("batch_size", [1, 4])
def test_small_cnn_by_hand(batch_size):
    layers = count_macs(small_cnn(), (1, 28, 28), batch_size=batch_size)
    assert [(lay.name, lay.module_type) for lay in layers] == [
        ("0", "Conv2d"),
        ("4", "Conv2d"),
        ("9", "Linear"),
    ]
    conv1, conv2, fc = layers
    # The first layer sees the raw data: no data gradient to compute.
    assert (conv1.forward, conv1.dgrad, conv1.wgrad) == (CONV1, 0, CONV1)
    assert (conv2.forward, conv2.dgrad, conv2.wgrad) == (CONV2, CONV2, CONV2)
    assert (fc.forward, fc.dgrad, fc.wgrad) == (FC, FC, FC)
    assert [lay.weight_elements for lay in layers] == [144, 4608, 15680]
    assert [lay.input_elements for lay in layers] == [784, 16 * 14 * 14, 1568]
    assert conv1.total == 2 * CONV1
    assert [conv2.macs(role) for role in GEMM_ROLES] == [CONV2] * 3


def test_mlp_by_hand():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    first, last = count_macs(mlp, (1, 28, 28))
    assert (first.name, first.forward, first.dgrad, first.wgrad) == ("1", 200_704, 0, 200_704)
    assert (last.name, last.forward, last.dgrad, last.wgrad) == ("3", 2560, 2560, 2560)


def test_grouped_strided_conv_conv1d_and_linear_on_sequences():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 1)
            # 15x15 -> floor((15 + 2 - 3) / 2) + 1 = 8x8 outputs, 8/4 = 2 input channels a group.
            self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
            # Length 20 -> 20 - 5 + 1 = 16 outputs.
            self.seq = nn.Conv1d(4, 6, 5)
            self.head = nn.Linear(12, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.grouped(self.stem(x))  # (N, 16, 8, 8)
            z = self.seq(y.reshape(-1, 4, 32)[:, :, :20])  # (8N, 6, 16)
            return self.head(z.reshape(x.shape[0], -1, 12))  # (N, 64, 12)

    stem, grouped, seq, head = count_macs(Net(), (3, 15, 15))
    assert stem.forward == 15 * 15 * 8 * 3
    assert grouped.forward == grouped.dgrad == grouped.wgrad == 8 * 8 * 16 * 2 * 9
    # (16*8*8) / (4*32) = 8 sequences a sample, each 16 * 6 * 4 * 5.
    assert seq.forward == 8 * 16 * 6 * 4 * 5
    # 8 * 6 * 16 / 12 = 64 rows of 12 features a sample, 12 x 5 each.
    assert head.forward == 64 * 12 * 5
    assert stem.dgrad == 0
    assert grouped.module_type == "Conv2d"
    assert seq.module_type == "Conv1d"


def test_a_trainable_layer_before_the_first_gemm_needs_its_data_gradient():
    # An affine BatchNorm on the raw input has parameters, so the conv must back-propagate.
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3))
    (conv,) = count_macs(model, (1, 6, 6))
    assert conv.forward == conv.dgrad == 4 * 4 * 4 * 9


def test_frozen_layers_have_no_weight_gradient_and_shield_their_inputs():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    model[0].requires_grad_(False)
    frozen, second = count_macs(model, (1, 8, 8))
    assert (frozen.forward, frozen.dgrad, frozen.wgrad) == (6 * 6 * 4 * 9, 0, 0)
    # Nothing upstream of the second conv is trainable: no data gradient either.
    assert (second.forward, second.dgrad, second.wgrad) == (4 * 4 * 4 * 36, 0, 4 * 4 * 4 * 36)


def test_a_layer_called_twice_counts_both_calls():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.fc(x)))

    (fc,) = count_macs(Twice(), (8,))
    # The first call's input is raw data, the second's is not.
    assert (fc.forward, fc.dgrad, fc.wgrad) == (128, 64, 128)
    assert fc.input_elements == 16


def test_tracing_leaves_the_model_as_it_was():
    model = small_cnn()
    model.train()
    model[5].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (1, 28, 28), batch_size=2)
    assert model.training
    assert not model[5].training
    assert model[1].training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_quantized_layers_count_as_the_layers_they_replace():
    plain = count_macs(small_cnn(), (1, 28, 28))
    quantized = count_macs(convert(small_cnn(), QuantSpec("hbfp4")), (1, 28, 28))
    assert quantized == plain
    assert [lay.module_type for lay in quantized] == ["Conv2d", "Conv2d", "Linear"]


def test_bad_models_shapes_and_batches_are_user_errors():
    with pytest.raises(CostError, match="no Conv1d/2d/3d or Linear layer"):
        count_macs(nn.Sequential(nn.ReLU()), (4,))
    with pytest.raises(CostError, match="batch_size must be at least 1"):
        count_macs(small_cnn(), (1, 28, 28), batch_size=0)
    with pytest.raises(CostError, match=r"does not run on inputs of shape \(2, 3, 28, 28\)") as err:
        count_macs(small_cnn(), (3, 28, 28), batch_size=2)
    # The CLI reports UserErrors as one line with exit code 2.
    assert isinstance(err.value, UserError)
    assert isinstance(err.value, ValueError)


class TinyAttention(nn.Module):
    """A linear layer (so that attention's input needs a gradient), then self-attention."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        return self.attention(h, h, h, need_weights=False)[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_macs_by_hand(batch_first: bool) -> None:
    # 5 tokens of width 8, 2 heads of 4: projections q, k, v, out 4 x 5 x 8 x 8 = 1280;
    # per head Q·Kᵀ 5 x 4 x 5 and P·V 5 x 5 x 4: 2 heads x 2 x 100 = 400, in each GEMM role
    # (a matmul's two gradient products, for its left and its right operand).
    counted = {m.name: m for m in count_macs(TinyAttention(batch_first), (5, 8), batch_size=3)}
    attention = counted["attention"]
    assert attention.module_type == "MultiheadAttention"
    assert (attention.forward, attention.dgrad, attention.wgrad) == (1680, 1680, 1680)
    assert attention.weight_elements == 4 * 8 * 8
    assert set(counted) == {"embed", "attention"}  # out_proj is the attention's, not a layer
