"""Models by name: shapes, structure and the torchvision adapter."""

import pytest
import torch
from torch import nn

from hbfp_dse.training.models import (
    LANGUAGE_MODEL_NAMES,
    MODEL_NAMES,
    CifarResNet,
    ShortcutA,
    build_model,
    count_parameters,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in LANGUAGE_MODEL_NAMES])
@pytest.mark.parametrize(("in_channels", "image_size"), [(1, 28), (3, 32)])
def test_every_model_builds_and_runs_forward(name: str, in_channels: int, image_size: int) -> None:
    model = build_model(name, num_classes=7, in_channels=in_channels, image_size=image_size)
    out = model(torch.randn(2, in_channels, image_size, image_size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", LANGUAGE_MODEL_NAMES)
def test_every_language_model_predicts_each_next_token(name: str) -> None:
    # num_classes is the vocabulary and image_size the context; shorter sequences work too.
    model = build_model(name, num_classes=50, in_channels=1, image_size=16)
    for length in (16, 5):
        out = model(torch.randint(0, 50, (2, length)))
        assert out.shape == (2, length, 50)
        assert torch.isfinite(out).all()
    tokens = torch.randint(0, 50, (1, 16))
    changed = tokens.clone()
    changed[0, 10] = (tokens[0, 10] + 1) % 50
    before, after = model(tokens), model(changed)
    assert torch.equal(before[0, :10], after[0, :10])  # causal: no position sees the future
    assert not torch.equal(before[0, 10:], after[0, 10:])


@pytest.mark.parametrize("name", ["resnet8", "cnn", "mlp"])
def test_small_models_backpropagate_to_every_parameter(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, image_size=28)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.arange(4))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("depth", [8, 20, 32, 44, 56, 110])
def test_cifar_resnet_has_depth_weighted_layers(depth: int) -> None:
    model = build_model(f"resnet{depth}", num_classes=10, in_channels=3, image_size=32)
    gemm_layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(gemm_layers) == depth
    assert [m.out_channels for m in gemm_layers if isinstance(m, nn.Conv2d)][-1] == 64


def test_resnet20_matches_the_paper_parameter_count() -> None:
    # He et al. 2016, Table 6: 0.27M parameters with option A shortcuts.
    model = build_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    assert count_parameters(model) == 269_722


def test_option_a_shortcut_subsamples_and_zero_pads_channels() -> None:
    shortcut = ShortcutA(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert list(shortcut.parameters()) == []
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.all(out[:, 16:] == 0)


def test_option_a_shortcut_matches_conv_output_size_on_odd_inputs() -> None:
    model = build_model("resnet8", num_classes=10, in_channels=1, image_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # 28 -> 14 -> 7 -> 4


def test_resnet_convolutions_use_kaiming_normal_fan_out() -> None:
    model = CifarResNet(20, num_classes=10)
    weight = model.layer3[1].conv1.weight  # 64 x 64 x 3 x 3
    expected_std = (2.0 / (64 * 9)) ** 0.5
    assert weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert weight.mean().item() == pytest.approx(0.0, abs=0.1 * expected_std)


def test_cnn_is_the_documented_small_cnn() -> None:
    model = build_model("cnn", num_classes=10, in_channels=1, image_size=28)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(16, (3, 3)), (32, (3, 3))]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(32 * 7 * 7, 10)]


def test_mlp_flattens_the_whole_image() -> None:
    model = build_model("mlp", num_classes=10, in_channels=3, image_size=32)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first.in_features == 3 * 32 * 32


def test_torchvision_model_adapts_input_channels_and_classes() -> None:
    model = build_model("tv:resnet18", num_classes=10, in_channels=1, image_size=32)
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 64
    assert model.fc.out_features == 10
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_torchvision_model_keeps_rgb_stem() -> None:
    model = build_model("tv:mobilenet_v3_small", num_classes=5, in_channels=3, image_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_torchvision_vit_takes_the_image_size() -> None:
    model = build_model("tv:vit_b_32", num_classes=3, in_channels=1, image_size=64)
    assert model.conv_proj.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)


def test_unknown_model_lists_accepted_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet18'") as err:
        build_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    for name in MODEL_NAMES:
        assert name in str(err.value)
    assert "tv:<" in str(err.value)


def test_unknown_torchvision_model_lists_torchvision_names() -> None:
    with pytest.raises(ValueError, match=r"unknown torchvision model 'nope'.*resnet18"):
        build_model("tv:nope", num_classes=10, in_channels=3, image_size=32)


def test_non_positive_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        build_model("cnn", num_classes=0, in_channels=1, image_size=28)
