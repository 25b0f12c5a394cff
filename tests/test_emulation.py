"""Quantized layers: every GEMM operand blocked along its GEMM's reduction axis.

The contract: docs/emulation.md.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.testing import assert_close

from hbfp_dse.emulation import (
    BLOCKINGS,
    Operand,
    QuantConv1d,
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    convert,
    round_master_weights,
)
from hbfp_dse.emulation.functions import ConvGeometry, QuantConvFunction, QuantLinearFunction
from hbfp_dse.formats import NoiseStream, quantize

# Short blocks and few mantissa bits: every tensor spans several blocks, and a block along the
# wrong axis visibly changes a result.
FMT = "hbfp4_b4"
SPEC = QuantSpec(FMT)


def q(t: Tensor, dim: int, fmt: str = FMT) -> Tensor:
    return quantize(t, fmt, dim)


def heavy(*shape: int, seed: int = 0) -> Tensor:
    """Values whose magnitudes vary by 2^7 from element to element: blocking them along
    any other axis than the expected one gives other values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 2.0 ** torch.randint(0, 8, shape, generator=g)


def ternary(*shape: int, seed: int = 1) -> Tensor:
    """Values in {-1, 0, 1}: exact in every HBFP format along every axis, so a GEMM with
    one ternary operand shows how the other operand alone was quantized."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(-1, 2, shape, generator=g).float()
    assert torch.equal(q(t, 0), t)
    assert torch.equal(q(t, -1), t)
    return t


def identity(t: Tensor, operand: Operand, dim: int) -> Tensor:
    return t


def linear_step(layer: nn.Module, x: Tensor, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Forward output, data gradient and weight gradient of one step with upstream ``dy``."""
    x = x.clone().requires_grad_(True)
    layer.zero_grad()
    y = layer(x)
    y.backward(dy)
    return y.detach(), x.grad, layer.weight.grad


def quant_linear(w: Tensor, spec: QuantSpec | None = SPEC) -> QuantLinear:
    layer = convert(nn.Linear(w.shape[1], w.shape[0], bias=False), spec)
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


# --- gradcheck ---------------------------------------------------------------------------


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_linear_function_gradcheck_float64(blocking: str) -> None:
    """With an identity quantizer the hand-written backward is the exact derivative."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: QuantLinearFunction.apply(x, w, b, identity, blocking), (x, w, b)
    )


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_conv_function_gradcheck_float64(blocking: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 2, 3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    geometry = ConvGeometry(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    assert torch.autograd.gradcheck(
        lambda x, w, b: QuantConvFunction.apply(x, w, b, geometry, identity, blocking),
        (x, w, b),
        fast_mode=True,  # float64 convs are slow on CPU; a random projection still checks
    )


def test_float64_layer_keeps_its_dtype() -> None:
    layer = convert(nn.Linear(8, 4).double(), SPEC)
    x = heavy(3, 8).double().requires_grad_(True)
    y = layer(x)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == layer.weight.grad.dtype == torch.float64
    assert_close(y, (q(x, -1) @ q(layer.weight, 1).T).double() + layer.bias, rtol=0, atol=0)


# --- the six operands of a Linear layer ------------------------------------------------------

ROWS, IN, OUT = 10, 8, 6  # blocks of 4: rows {0-3, 4-7, 8-9}, outputs {0-3, 4-5}
SHAPES = {"x": (ROWS, IN), "w": (OUT, IN), "dy": (ROWS, OUT)}


def gemm(result: str, x: Tensor, w: Tensor, dy: Tensor) -> Tensor:
    return {"y": x @ w.T, "dx": dy @ w, "dw": dy.T @ x}[result]


@pytest.mark.parametrize(
    ("quantized", "dim", "result"),
    [
        pytest.param("x", 1, "y", id="forward-X-along-input-features"),
        pytest.param("w", 1, "y", id="forward-W-along-input-features"),
        pytest.param("dy", 1, "dx", id="dgrad-dY-along-output-features"),
        pytest.param("w", 0, "dx", id="dgrad-W-along-output-features"),
        pytest.param("dy", 0, "dw", id="wgrad-dY-along-batch"),
        pytest.param("x", 0, "dw", id="wgrad-X-along-batch"),
    ],
)
def test_linear_operand_blocks_along_its_gemm_reduction_axis(
    quantized: str, dim: int, result: str
) -> None:
    # The other two tensors are ternary (exact), so `result` shows this operand's blocking.
    t = {name: ternary(*shape, seed=i) for i, (name, shape) in enumerate(SHAPES.items())}
    t[quantized] = heavy(*SHAPES[quantized])
    y, dx, dw = linear_step(quant_linear(t["w"]), t["x"], t["dy"])
    got = {"y": y, "dx": dx, "dw": dw}[result]
    expected = gemm(result, **{**t, quantized: q(t[quantized], dim)})
    wrong_axis = gemm(result, **{**t, quantized: q(t[quantized], 1 - dim)})
    assert_close(got, expected)
    assert not torch.allclose(got, wrong_axis)


def test_linear_on_3d_inputs_blocks_features_and_flattened_rows() -> None:
    x, w, dy = heavy(2, 5, IN, seed=1), heavy(OUT, IN, seed=2), heavy(2, 5, OUT, seed=3)
    y, dx, dw = linear_step(quant_linear(w), x, dy)
    x2, dy2 = x.reshape(-1, IN), dy.reshape(-1, OUT)
    assert_close(y, q(x, -1) @ q(w, 1).T)
    assert_close(dx, (q(dy2, 1) @ q(w, 0)).reshape(x.shape))
    assert_close(dw, q(dy2, 0).T @ q(x2, 0))


def test_linear_bias_gradient_stays_fp32() -> None:
    layer = convert(nn.Linear(IN, OUT), SPEC)
    dy = heavy(ROWS, OUT)
    layer(heavy(ROWS, IN)).backward(dy)
    assert torch.equal(layer.bias.grad, dy.sum(0))


# --- convolutions ------------------------------------------------------------------------


def unfolded_conv_gemms(
    x: Tensor, w: Tensor, dy: Tensor, stride: int, padding: int, dilation: int, groups: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The three GEMMs of a conv built by hand from im2col patches, every operand blocked
    along its GEMM's reduction axis ordered tap-major: forward and data gradient along the
    channels of one group at one kernel tap, weight gradient along the batch at one pixel."""
    n, c, h, width = x.shape
    o, cg, kh, kw = w.shape
    og, taps = o // groups, kh * kw
    cols = F.unfold(x, (kh, kw), dilation, padding, stride)
    pixels = cols.shape[-1]
    cols = cols.reshape(n, groups, cg, taps, pixels)
    wg = w.reshape(groups, og, cg, taps)
    dyg = dy.reshape(n, groups, og, pixels)
    y = torch.einsum("goct,ngctl->ngol", q(wg, 2), q(cols, 2)).reshape(dy.shape)
    dcols = torch.einsum("goct,ngol->ngctl", q(wg, 1), q(dyg, 2))
    dx = F.fold(dcols.reshape(n, c * taps, pixels), (h, width), (kh, kw), dilation, padding, stride)
    dw = torch.einsum("ngol,ngctl->goct", q(dyg, 0), q(cols, 0)).reshape(w.shape)
    return y, dx, dw


def test_conv_with_stride_padding_dilation_groups_matches_the_unfolded_gemms() -> None:
    # 6 channels a group with blocks of 4, 3 output channels a group with blocks of 4 and a
    # batch of 6: blocks that crossed a group, a tap or a pixel would change the results.
    conv = convert(nn.Conv2d(12, 6, 3, stride=2, padding=1, dilation=2, groups=2), SPEC)
    x = heavy(6, 12, 9, 8, seed=1)
    with torch.no_grad():
        conv.weight.copy_(heavy(*conv.weight.shape, seed=2))
    dy = heavy(*conv(x).shape, seed=3)
    y, dx, dw = linear_step(conv, x, dy)
    ref_y, ref_dx, ref_dw = unfolded_conv_gemms(x, conv.weight.detach(), dy, 2, 1, 2, 2)
    assert_close(y, ref_y + conv.bias.detach().view(1, -1, 1, 1))
    assert_close(dx, ref_dx)
    assert_close(dw, ref_dw)
    assert torch.equal(conv.bias.grad, dy.sum((0, 2, 3)))
    across_groups = F.conv2d(q(x, 1), q(conv.weight, 1), conv.bias, 2, 1, 2, 2)
    assert not torch.allclose(y, across_groups)


def test_conv_operands_are_quantized_the_documented_way() -> None:
    """Against torch's own conv GEMMs on tensors quantized along channels (per group) and
    along the batch."""
    conv = convert(nn.Conv2d(8, 4, (3, 2), stride=(1, 2), padding=(2, 1), groups=2), SPEC)
    x = heavy(5, 8, 7, 7, seed=4)
    dy = heavy(*conv(x).shape, seed=5)
    y, dx, dw = linear_step(conv, x, dy)
    w = conv.weight.detach()

    def per_group(t: Tensor, dim: int) -> Tensor:
        return torch.cat([q(part, dim) for part in t.chunk(2, dim)], dim)

    args = {"stride": (1, 2), "padding": (2, 1), "groups": 2}
    assert_close(y, F.conv2d(per_group(x, 1), q(w, 1), conv.bias, **args))
    assert_close(dx, torch.nn.grad.conv2d_input(x.shape, per_group(w, 0), per_group(dy, 1), **args))
    assert_close(dw, torch.nn.grad.conv2d_weight(q(x, 0), w.shape, q(dy, 0), **args))


def test_conv1d_with_same_padding_and_reflect_mode_pads_before_quantizing() -> None:
    conv = convert(nn.Conv1d(4, 4, 3, padding="same", padding_mode="reflect"), SPEC)
    x = heavy(3, 4, 11)
    padded = F.pad(x, (1, 1), mode="reflect")
    expected = F.conv1d(q(padded, 1), q(conv.weight, 1), conv.bias)
    assert isinstance(conv, QuantConv1d)
    assert_close(conv(x), expected)


def test_conv_accepts_unbatched_inputs_like_torch() -> None:
    conv = convert(nn.Conv2d(4, 4, 3, padding=1), SPEC)
    x = heavy(4, 6, 6)
    assert_close(conv(x), conv(x.unsqueeze(0)).squeeze(0))


# --- reference blocking --------------------------------------------------------------------


def test_reference_blocking_reuses_forward_operands_in_backward() -> None:
    x, w, dy = heavy(ROWS, IN, seed=1), heavy(OUT, IN, seed=2), heavy(ROWS, OUT, seed=3)
    y, dx, dw = linear_step(quant_linear(w, QuantSpec(FMT, blocking="reference")), x, dy)
    xq, wq, dyq = q(x, 1), q(w, 1), q(dy, 1)  # X, W as in forward; dY once, along outputs
    assert_close(y, xq @ wq.T)
    assert_close(dx, dyq @ wq)
    assert_close(dw, dyq.T @ xq)
    _, dx_reduction, dw_reduction = linear_step(quant_linear(w), x, dy)
    assert not torch.allclose(dx, dx_reduction)
    assert not torch.allclose(dw, dw_reduction)


def test_reference_blocking_for_conv() -> None:
    conv = convert(nn.Conv2d(8, 4, 3, padding=1, groups=2), QuantSpec(FMT, blocking="reference"))
    x = heavy(3, 8, 5, 5, seed=6)
    dy = heavy(3, 4, 5, 5, seed=7)
    y, dx, dw = linear_step(conv, x, dy)

    def per_group(t: Tensor) -> Tensor:
        return torch.cat([q(part, 1) for part in t.chunk(2, 1)], 1)

    xq, wq, dyq = per_group(x), q(conv.weight, 1), per_group(dy)
    args = {"padding": 1, "groups": 2}
    assert_close(y, F.conv2d(xq, wq, conv.bias, **args))
    assert_close(dx, torch.nn.grad.conv2d_input(x.shape, wq, dyq, **args))
    assert_close(dw, torch.nn.grad.conv2d_weight(xq, wq.shape, dyq, **args))


def test_emulator_blocking_blocks_every_conv_tensor_along_its_last_dimension() -> None:
    # As the authors' emulator: activations and output gradients along the image width (7,
    # a short last block with blocks of 4), weights along the kernel width; reused as in
    # reference blocking.
    fmt = "hbfp4_b4"
    conv = convert(nn.Conv2d(8, 4, 3, padding=1, groups=2), QuantSpec(fmt, blocking="emulator"))
    x = heavy(3, 8, 5, 7, seed=6)
    dy = heavy(3, 4, 5, 7, seed=7)
    y, dx, dw = linear_step(conv, x, dy)
    xq, wq, dyq = q(x, -1, fmt), q(conv.weight, -1, fmt), q(dy, -1, fmt)
    args = {"padding": 1, "groups": 2}
    assert_close(y, F.conv2d(xq, wq, conv.bias, **args))
    assert_close(dx, torch.nn.grad.conv2d_input(x.shape, wq, dyq, **args))
    assert_close(dw, torch.nn.grad.conv2d_weight(xq, wq.shape, dyq, **args))
    reference = convert(nn.Conv2d(8, 4, 3, padding=1, groups=2), QuantSpec(fmt, "reference"))
    reference.load_state_dict(conv.state_dict())
    assert not torch.allclose(linear_step(reference, x, dy)[0], y)


def test_emulator_blocking_of_a_linear_layer_is_reference_blocking() -> None:
    x, w, dy = heavy(ROWS, IN, seed=1), heavy(OUT, IN, seed=2), heavy(ROWS, OUT, seed=3)
    emulator = linear_step(quant_linear(w, QuantSpec(FMT, blocking="emulator")), x, dy)
    reference = linear_step(quant_linear(w, QuantSpec(FMT, blocking="reference")), x, dy)
    for got, expected in zip(emulator, reference, strict=True):
        assert torch.equal(got, expected)


# --- fp32 is the unconverted layer -----------------------------------------------------------


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, groups=2),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    )


@pytest.mark.parametrize("spec", [None, QuantSpec("fp32"), QuantSpec("fp32", "reference")])
def test_fp32_layers_give_exactly_the_unconverted_outputs_and_gradients(
    spec: QuantSpec | None,
) -> None:
    torch.manual_seed(0)
    plain = small_net()
    converted = convert(plain, spec, inplace=False)
    assert isinstance(converted[0], QuantConv2d)
    assert not isinstance(plain[0], QuantConv2d)
    x = torch.randn(4, 3, 8, 8)
    outputs = []
    for model in (plain, converted):
        out = model(x)
        out.square().sum().backward()
        outputs.append(out)
    assert torch.equal(outputs[0], outputs[1])
    for p, c in zip(plain.parameters(), converted.parameters(), strict=True):
        assert torch.equal(p.grad, c.grad)


def test_convert_keeps_parameters_and_state_dict_keys() -> None:
    model = small_net()
    params = list(model.parameters())
    keys = list(model.state_dict())
    assert convert(model, SPEC) is model
    assert list(model.parameters()) == params
    assert list(model.state_dict()) == keys


def test_convert_leaves_subclasses_with_their_own_forward() -> None:
    class Custom(nn.Linear):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x) * 2

    model = convert(nn.Sequential(Custom(4, 4), nn.Linear(4, 4)), SPEC)
    assert type(model[0]) is Custom
    assert isinstance(model[1], QuantLinear)


# --- rounding ------------------------------------------------------------------------------


def rounding_run(
    spec: QuantSpec, seed: int, w: Tensor, x: Tensor, dy: Tensor
) -> tuple[Tensor, Tensor]:
    layer = quant_linear(w, spec)
    layer.noise = NoiseStream(seed)
    y, dx, _ = linear_step(layer, x, dy)
    return y, dx


def test_forward_rounding_is_stochastic_and_seeded_while_gradients_round_to_nearest() -> None:
    spec = QuantSpec(FMT, forward_rounding="stochastic", backward_rounding="nearest")
    x, w, dy = heavy(ROWS, IN, seed=1), ternary(OUT, IN), heavy(ROWS, OUT, seed=3)
    y1, dx1 = rounding_run(spec, 1, w, x, dy)
    y1_again, dx1_again = rounding_run(spec, 1, w, x, dy)
    y2, dx2 = rounding_run(spec, 2, w, x, dy)
    assert torch.equal(y1, y1_again)
    assert not torch.equal(y1, y2)
    assert not torch.allclose(y1, q(x, 1) @ w.T)
    # W is ternary (exact under any rounding): dX shows dY's nearest rounding, for any seed.
    assert_close(dx1, q(dy, 1) @ w)
    assert torch.equal(dx1, dx1_again)
    assert torch.equal(dx1, dx2)


def test_gradient_rounding_is_stochastic_and_seeded_while_forward_rounds_to_nearest() -> None:
    spec = QuantSpec(FMT, forward_rounding="nearest", backward_rounding="stochastic")
    x, w, dy = heavy(ROWS, IN, seed=1), ternary(OUT, IN), heavy(ROWS, OUT, seed=3)
    y1, dx1 = rounding_run(spec, 1, w, x, dy)
    _, dx1_again = rounding_run(spec, 1, w, x, dy)
    y2, dx2 = rounding_run(spec, 2, w, x, dy)
    assert_close(y1, q(x, 1) @ w.T)
    assert torch.equal(y1, y2)
    assert torch.equal(dx1, dx1_again)
    assert not torch.equal(dx1, dx2)
    assert not torch.allclose(dx1, q(dy, 1) @ w)


# --- wide weight storage -------------------------------------------------------------------


def test_round_master_weights_rounds_master_weights_of_active_layers_only() -> None:
    torch.manual_seed(0)
    model = convert(small_net(), SPEC)
    model[5].quant = None  # an FP32 layer keeps its weights
    before = [m.weight.detach().clone() for m in (model[0], model[3], model[5])]
    biases = [m.bias.detach().clone() for m in (model[0], model[3], model[5])]
    round_master_weights(model, "hbfp6")
    for module, weight, bias in zip((model[0], model[3]), before, biases, strict=False):
        assert torch.equal(module.weight, q(weight, 1, "hbfp6"))
        assert not torch.equal(module.weight, weight)
        assert torch.equal(module.bias, bias)  # biases stay FP32
    assert torch.equal(model[5].weight, before[2])
    assert model[0].weight.requires_grad
