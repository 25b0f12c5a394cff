"""A run's density under per-epoch, per-layer schedules, checked by hand."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from test_cost_macs import small_cnn
from torch import nn
from torch.nn import functional

from hbfp_dse.cost import GemmFormats, count_macs, density, load_areas, run_cost

# Built-in table: PE areas (µm²) on 16x16 tiles, term by term.
A32 = 485.271 + 1009.0575
A_BF16 = 173.1375 + 135.837
SHARED_256 = 173.1375 / 16 + 21.384 / 256
A4 = 30.861 + 28.3095 + SHARED_256  # mul int4 + add int13
A6 = 69.498 + (16.767 + 9 * 2.3085) + SHARED_256  # mul int6 + add int17 (fitted)
HBFP_256 = 8 / 256  # shared-exponent bits per element

# Small CNN on 28x28x1, per sample (see test_cost_macs.py): conv1 has no data gradient.
CONV1, CONV2, FC = 28 * 28 * 16 * 9, 14 * 14 * 32 * 16 * 9, 1568 * 10
CNN_EPOCH = 2 * CONV1 + 3 * CONV2 + 3 * FC  # 2,982,336


@pytest.fixture(scope="module")
def cnn_layers():
    model = small_cnn()
    return count_macs(model, (1, 28, 28))


@pytest.mark.parametrize(
    ("fmt", "mantissa"),
    [
        ("hbfp4_b256", 4),
        ("hbfp6", 6),
        ("hbfp4_s16", 4),
        ("mxfp6_e2m3", 5),
        ("fp8_e4m3", 5),
        ("bf16", 9),
    ],
)
def test_uniform_schedule_has_the_pe_density(cnn_layers, fmt, mantissa):
    schedule = [dict.fromkeys(("0", "4", "9"), fmt)] * 3
    cost = run_cost(cnn_layers, schedule)
    assert cost.density_vs_fp32 == pytest.approx(density(fmt), rel=1e-12)
    assert cost.density_vs_bf16 == pytest.approx(density(fmt, reference="bf16"), rel=1e-12)
    assert cost.mac_share == {mantissa: 1.0}
    assert cost.epochs == 3
    assert cost.macs == 3 * CNN_EPOCH


def test_layers_left_out_run_in_fp32(cnn_layers):
    for schedule in ([{}], [{"0": None, "4": "fp32", "9": "FP32"}, {}]):
        cost = run_cost(cnn_layers, schedule)
        assert cost.density_vs_fp32 == pytest.approx(1.0, rel=1e-12)
        assert cost.density_vs_bf16 == pytest.approx(A_BF16 / A32, rel=1e-9)
        assert cost.mac_share == {"fp32": 1.0}
        assert all(layer.formats == ("fp32",) for layer in cost.layers)


def test_share_keys_are_mantissa_widths_then_fp32(cnn_layers):
    cost = run_cost(cnn_layers, [{"4": "hbfp4_b256"}])
    assert list(cost.mac_share) == [4, "fp32"]
    assert cost.mac_share[4] == pytest.approx(3 * CONV2 / CNN_EPOCH, rel=1e-12)
    expected = CNN_EPOCH * A32 / (3 * CONV2 * A4 + (2 * CONV1 + 3 * FC) * A32)
    assert cost.density_vs_fp32 == pytest.approx(expected, rel=1e-6)


def test_booster_on_the_small_cnn_over_10_epochs(cnn_layers):
    # HBFP4 except HBFP6 in the first and last layers and in the last epoch.
    low = {"0": "hbfp6_b256", "4": "hbfp4_b256", "9": "hbfp6_b256"}
    schedule = [low] * 9 + [dict.fromkeys(low, "hbfp6_b256")]
    cost = run_cost(cnn_layers, schedule)
    total = 10 * CNN_EPOCH  # 29,823,360
    at4 = 9 * 3 * CONV2  # 24,385,536
    assert cost.macs == total
    assert cost.mac_share[4] == pytest.approx(24_385_536 / 29_823_360, rel=1e-12)
    assert cost.mac_share[6] == pytest.approx(5_437_824 / 29_823_360, rel=1e-12)
    assert cost.density_vs_fp32 == pytest.approx(
        total * A32 / (at4 * A4 + (total - at4) * A6), rel=1e-6
    )
    assert cost.density_vs_bf16 == pytest.approx(
        total * A_BF16 / (at4 * A4 + (total - at4) * A6), rel=1e-6
    )
    conv1, conv2, fc = cost.layers
    assert (conv1.name, conv1.macs, conv1.formats) == ("0", 10 * 2 * CONV1, ("hbfp6_b256",))
    assert conv1.area == pytest.approx(10 * 2 * CONV1 * A6, rel=1e-6)
    assert conv1.fp32_area == pytest.approx(10 * 2 * CONV1 * A32, rel=1e-6)
    assert conv2.formats == ("hbfp4_b256", "hbfp6_b256")
    assert conv2.area == pytest.approx(3 * CONV2 * (9 * A4 + A6), rel=1e-6)
    assert conv2.density == pytest.approx(10 * A32 / (9 * A4 + A6), rel=1e-6)
    assert fc.module_type == "Linear"


def test_storage_footprint(cnn_layers):
    low = {"0": "hbfp6_b256", "4": "hbfp4_b256", "9": "hbfp6_b256"}
    cost = run_cost(cnn_layers, [low, dict.fromkeys(low, "hbfp6_b256")])
    first, last = cost.operand_bits
    assert first.weight_bits == pytest.approx(
        144 * (6 + HBFP_256) + 4608 * (4 + HBFP_256) + 15680 * (6 + HBFP_256), rel=1e-12
    )
    assert first.activation_bits == pytest.approx(
        784 * (6 + HBFP_256) + 3136 * (4 + HBFP_256) + 1568 * (6 + HBFP_256), rel=1e-12
    )
    assert last.weight_bits == pytest.approx(20432 * (6 + HBFP_256), rel=1e-12)
    assert cost.fp32_operand_bits.weight_bits == 20432 * 32
    assert cost.fp32_operand_bits.activation_bits == 5488 * 32


def test_gemm_specific_formats(cnn_layers):
    # conv2: forward in HBFP4, data gradient in HBFP6, weight gradient left in FP32.
    mixed = GemmFormats(forward="hbfp4_b256", dgrad="hbfp6_b256")
    cost = run_cost(cnn_layers, [{"4": mixed}])
    area = CONV2 * (A4 + A6 + A32) + (2 * CONV1 + 3 * FC) * A32
    assert cost.density_vs_fp32 == pytest.approx(CNN_EPOCH * A32 / area, rel=1e-6)
    assert cost.mac_share == pytest.approx(
        {4: CONV2 / CNN_EPOCH, 6: CONV2 / CNN_EPOCH, "fp32": 1 - 2 * CONV2 / CNN_EPOCH}
    )
    assert cost.layers[1].formats == ("hbfp4_b256", "hbfp6_b256", "fp32")
    # Weights are read in the forward format, stashed inputs in the weight-gradient format.
    (bits,) = cost.operand_bits
    assert bits.weight_bits == pytest.approx(4608 * (4 + HBFP_256) + 15824 * 32, rel=1e-12)
    assert bits.activation_bits == pytest.approx(5488 * 32, rel=1e-12)


def test_first_layer_format_for_a_data_gradient_it_does_not_have(cnn_layers):
    # conv1 computes no data gradient: its dgrad format costs nothing and is not listed.
    cost = run_cost(cnn_layers, [{"0": GemmFormats(dgrad="hbfp4_b256")}])
    assert cost.density_vs_fp32 == pytest.approx(1.0, rel=1e-12)
    assert cost.layers[0].formats == ("fp32",)


def test_user_area_table_changes_the_run_density(cnn_layers, tmp_path):
    builtin = resources.files("hbfp_dse").joinpath("data", "unit_areas_um2.csv").read_text()
    path = tmp_path / "areas.csv"
    path.write_text(builtin.replace("add,int13,28.3095", "add,int13,100"))
    areas = load_areas(path)
    cost = run_cost(cnn_layers, [dict.fromkeys(("0", "4", "9"), "hbfp4_b256")], areas=areas)
    assert cost.density_vs_fp32 == pytest.approx(A32 / (A4 - 28.3095 + 100), rel=1e-6)


def test_bad_schedules_are_rejected(cnn_layers):
    with pytest.raises(ValueError, match=r"epoch 2: no GEMM layer named 'conv9'"):
        run_cost(cnn_layers, [{"0": "hbfp4"}, {"conv9": "hbfp4"}])
    with pytest.raises(ValueError, match="at least one epoch"):
        run_cost(cnn_layers, [])
    with pytest.raises(ValueError, match="unknown format"):
        run_cost(cnn_layers, [{"0": "hbfp4x"}])


class Block(nn.Module):
    """CIFAR ResNet basic block with the parameter-free option-A shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(functional.relu(self.bn1(self.conv1(x)))))
        shortcut = functional.pad(
            x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra)
        )
        return functional.relu(out + shortcut)


class ResNet20(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        for cin, cout, stride in ((16, 16, 1), (16, 32, 2), (32, 64, 2)):
            stages.append(
                nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1), Block(cout, cout, 1))
            )
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(functional.relu(self.bn1(self.conv1(x))))
        return self.fc(out.mean(dim=(2, 3)))


# ResNet-20 on 32x32x3, forward MACs per sample.
R_CONV1 = 32 * 32 * 16 * 3 * 9  # 442,368
R_FULL = 32 * 32 * 16 * 16 * 9  # 2,359,296: every 3x3 conv keeping its stage's shape
R_DOWN = 16 * 16 * 32 * 16 * 9  # 1,179,648: the first conv of stages 2 and 3 (same in both)
R_FC = 64 * 10
R_FORWARD = R_CONV1 + 16 * R_FULL + 2 * R_DOWN + R_FC  # 40,551,040


def test_resnet20_booster_over_160_epochs():
    layers = count_macs(ResNet20(), (3, 32, 32))
    assert len(layers) == 20
    assert sum(layer.forward for layer in layers) == R_FORWARD == 40_551_040
    assert (layers[0].name, layers[0].dgrad) == ("conv1", 0)
    assert layers[-1].name == "fc"
    # Booster: HBFP4 (blocks of 64), HBFP6 in the first and last layers and in epoch 160.
    low = {layer.name: "hbfp4" for layer in layers} | {"conv1": "hbfp6", "fc": "hbfp6"}
    schedule = [low] * 159 + [dict.fromkeys(low, "hbfp6")]
    cost = run_cost(layers, schedule)
    per_epoch = 3 * R_FORWARD - R_CONV1  # 121,210,752
    boosted = 2 * R_CONV1 + 3 * R_FC  # 886,656: conv1 forward + wgrad, fc all three
    assert cost.mac_share[4] == pytest.approx(
        159 * (per_epoch - boosted) / (160 * per_epoch), rel=1e-12
    )
    # 98.65%: the epoch at 6 bits is 1/160 of the work, conv1 another 0.7%.
    assert cost.mac_share[4] == pytest.approx(0.98648, abs=1e-5)
    assert cost.mac_share[6] == pytest.approx(1 - cost.mac_share[4], rel=1e-12)
