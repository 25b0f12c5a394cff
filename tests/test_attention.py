"""Opt-in quantized attention: projections and both attention matmuls on quantized operands."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.testing import assert_close

from hbfp_dse.emulation import (
    BLOCKINGS,
    Operand,
    QuantMatmulFunction,
    QuantMultiheadAttention,
    QuantSpec,
    Rule,
    Schedule,
    convert,
    layer_infos,
    round_master_weights,
)
from hbfp_dse.formats import NoiseStream, quantize
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.data import DATASET_INFO, DatasetPair, ImageSplit
from hbfp_dse.training.trainer import train

FMT = "hbfp4_b4"
SPEC = QuantSpec(FMT)
E, HEADS = 16, 2  # head_dim 8: two blocks of 4 per head


def q(t: Tensor, dim: int) -> Tensor:
    return quantize(t, FMT, dim)


def heavy(*shape: int, seed: int = 0) -> Tensor:
    """Magnitudes that vary by 2^7 between elements: any other blocking gives other values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 2.0 ** torch.randint(0, 8, shape, generator=g)


def ternary(*shape: int, seed: int = 1) -> Tensor:
    """Values in {-1, 0, 1}: exact in every HBFP format along every axis."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, shape, generator=g).float()


def identity(t: Tensor, operand: Operand, dim: int) -> Tensor:
    return t


def attention_pair(dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple[nn.Module, Any]:
    """An ``nn.MultiheadAttention`` and a converted copy with the same weights."""
    torch.manual_seed(0)
    plain = nn.MultiheadAttention(E, HEADS, **kwargs).to(dtype)
    if plain.in_proj_bias is not None:  # torch starts biases at zero; test them non-zero
        with torch.no_grad():
            plain.in_proj_bias.normal_()
            plain.out_proj.bias.normal_()
    return plain, convert(plain, SPEC, inplace=False, attention=True)


# --- the quantized matmul ------------------------------------------------------------------

M, K, N = 10, 8, 6
SHAPES = {"a": (2, M, K), "b": (2, K, N), "dc": (2, M, N)}


def products(a: Tensor, b: Tensor, dc: Tensor) -> dict[str, Tensor]:
    return {"c": a @ b, "da": dc @ b.transpose(-2, -1), "db": a.transpose(-2, -1) @ dc}


def matmul_step(a: Tensor, b: Tensor, dc: Tensor, blocking: str = "reduction") -> dict[str, Tensor]:
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)

    def quantizer(t: Tensor, operand: Operand, dim: int) -> Tensor:
        return q(t, dim)

    c = QuantMatmulFunction.apply(a, b, quantizer, blocking)
    c.backward(dc)
    return {"c": c.detach(), "da": a.grad, "db": b.grad}


@pytest.mark.parametrize(
    ("quantized", "dim", "result"),
    [
        pytest.param("a", -1, "c", id="forward-A-along-k"),
        pytest.param("b", -2, "c", id="forward-B-along-k"),
        pytest.param("dc", -1, "da", id="dgrad-dC-along-n"),
        pytest.param("b", -1, "da", id="dgrad-B-along-n"),
        pytest.param("dc", -2, "db", id="wgrad-dC-along-m"),
        pytest.param("a", -2, "db", id="wgrad-A-along-m"),
    ],
)
def test_matmul_operand_blocks_along_its_gemm_reduction_axis(
    quantized: str, dim: int, result: str
) -> None:
    t = {name: ternary(*shape, seed=i) for i, (name, shape) in enumerate(SHAPES.items())}
    t[quantized] = heavy(*SHAPES[quantized])
    got = matmul_step(**t)[result]
    expected = products(**{**t, quantized: q(t[quantized], dim)})[result]
    wrong_axis = products(**{**t, quantized: q(t[quantized], -3 - dim)})[result]
    assert_close(got, expected)
    assert not torch.allclose(got, wrong_axis)


@pytest.mark.parametrize(
    ("blocking", "b_dim"),
    [
        pytest.param("reference", -2, id="reference-B-along-k"),
        pytest.param("emulator", -1, id="emulator-B-along-n"),
    ],
)
def test_matmul_reuse_blockings_reuse_forward_operands(blocking: str, b_dim: int) -> None:
    """Both quantize a, b and dc once and reuse them; emulator blocks b along its last
    dimension."""
    a, b, dc = heavy(*SHAPES["a"], seed=1), heavy(*SHAPES["b"], seed=2), heavy(*SHAPES["dc"])
    got = matmul_step(a, b, dc, blocking=blocking)
    aq, bq, dcq = q(a, -1), q(b, b_dim), q(dc, -1)
    assert_close(got["c"], aq @ bq)
    assert_close(got["da"], dcq @ bq.transpose(-2, -1))
    assert_close(got["db"], aq.transpose(-2, -1) @ dcq)


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_matmul_gradcheck_float64(blocking: str) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: QuantMatmulFunction.apply(a, b, identity, blocking), (a, b)
    )


# --- the layer -----------------------------------------------------------------------------


def test_convert_swaps_attention_only_when_asked() -> None:
    model = nn.Sequential(nn.Linear(E, E), nn.MultiheadAttention(E, HEADS))
    keys = list(model.state_dict())
    convert(model, SPEC)
    assert type(model[1]) is nn.MultiheadAttention
    convert(model, SPEC, attention=True)
    assert isinstance(model[1], QuantMultiheadAttention)
    assert model[1].quant == SPEC
    assert list(model.state_dict()) == keys
    # One layer: out_proj runs inside it, not as a layer of its own.
    assert [(i.name, i.kind) for i in layer_infos(model)] == [
        ("0", "Linear"),
        ("1", "MultiheadAttention"),
    ]
    table = Schedule((Rule("hbfp6", layers=("type:multiheadattention",)),)).resolve(
        layer_infos(model), 1
    )
    assert {k: f.name for k, f in table[0].items()} == {"0": "fp32", "1": "hbfp6"}


@pytest.mark.parametrize("spec", [None, QuantSpec("fp32")])
@pytest.mark.parametrize("batch_first", [False, True])
def test_fp32_attention_is_exactly_nn_multihead_attention(
    spec: QuantSpec | None, batch_first: bool
) -> None:
    plain, converted = attention_pair(batch_first=batch_first)
    converted.quant = spec
    x = torch.randn(3, 5, E)
    outs = []
    for module in (plain, converted):
        out, weights = module(x, x, x)
        (out.square().sum() + weights.sum()).backward()
        outs.append((out, weights))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])
    for p, c in zip(plain.parameters(), converted.parameters(), strict=True):
        assert torch.equal(p.grad, c.grad)


def masks(seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, -2:] = padding[2, -1] = True
    return {
        "bool_padding": padding,
        "float_padding": torch.randn(3, 7, generator=g, dtype=torch.float64),
        "causal": torch.ones(5, 7, dtype=torch.bool).triu(3),
        "per_head": torch.randn(3 * HEADS, 5, 7, generator=g, dtype=torch.float64),
    }


CASES = {
    "plain": ({}, {}),
    "batch_first": ({"batch_first": True}, {}),
    "kdim_vdim": ({"kdim": 6, "vdim": 4}, {}),
    "no_bias": ({"bias": False}, {}),
    "bias_kv_zero_attn": ({"add_bias_kv": True, "add_zero_attn": True}, {"padding": "bool"}),
    "bool_padding_and_2d_mask": ({}, {"padding": "bool", "mask": "causal"}),
    "float_padding_and_3d_mask": ({}, {"padding": "float", "mask": "per_head"}),
    "causal_hint": ({}, {"mask": "causal", "is_causal": True}),
    "per_head_weights": ({}, {"average_attn_weights": False}),
    "no_weights": ({}, {"need_weights": False, "padding": "bool"}),
    "unbatched": ({}, {"unbatched": True}),
}


@pytest.mark.parametrize("case", CASES)
def test_explicit_attention_matches_torch_with_an_identity_quantizer(case: str) -> None:
    """The explicit path (projections, scaling, masks, softmax, P·V) computes what torch
    computes when quantization is the identity: float64, to rounding."""
    init, options = CASES[case]
    plain, converted = attention_pair(torch.float64, **init)
    converted.operand_quantizer = lambda spec: identity  # active spec, identity operands
    kdim, vdim = init.get("kdim", E), init.get("vdim", E)
    g = torch.Generator().manual_seed(1)
    # 3 sequences, 5 queries, 7 keys; torch's layout is sequence first unless batch_first.
    query, key, value = (
        torch.randn(length, 3, dim, dtype=torch.float64, generator=g)
        for length, dim in ((5, E), (7, kdim), (7, vdim))
    )
    if init.get("batch_first"):
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    kwargs: dict[str, Any] = {
        k: v
        for k, v in options.items()
        if k in ("need_weights", "average_attn_weights", "is_causal")
    }
    available = masks()
    if "padding" in options:
        kwargs["key_padding_mask"] = available[f"{options['padding']}_padding"]
    if "mask" in options:
        kwargs["attn_mask"] = available[options["mask"]]
    if options.get("unbatched"):
        query, key, value = query[:, 0], key[:, 0], value[:, 0]
    results = []
    for module in (plain, converted):
        inputs = [t.clone().requires_grad_(True) for t in (query, key, value)]
        out, weights = module(*inputs, **kwargs)
        out.square().sum().backward()
        results.append((out, weights, [t.grad for t in inputs]))
    (out, weights, grads), (q_out, q_weights, q_grads) = results
    assert_close(q_out, out, rtol=1e-10, atol=1e-10)
    if weights is None:
        assert q_weights is None
    else:
        assert_close(q_weights, weights, rtol=1e-10, atol=1e-10)
    for a, b in zip(q_grads, grads, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
    for p, c in zip(plain.parameters(), converted.parameters(), strict=True):
        assert_close(c.grad, p.grad, rtol=1e-10, atol=1e-10)


def test_is_causal_needs_a_mask_as_in_torch() -> None:
    _, converted = attention_pair()
    x = torch.randn(5, 3, E)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        converted(x, x, x, is_causal=True)


def reference_self_attention(m: nn.MultiheadAttention, x: Tensor, pv_dim: int = -2) -> Tensor:
    """Batch-first self-attention built from ``quantize`` calls: projections along the
    embedding, Q·Kᵀ along head_dim, P·V along the keys (``pv_dim`` of V)."""
    n, length, _ = x.shape
    d = E // HEADS
    w = m.in_proj_weight.detach().chunk(3)
    b = m.in_proj_bias.detach().chunk(3)

    def linear(t: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return F.linear(q(t, -1), q(weight, 1), bias)

    def heads(t: Tensor) -> Tensor:
        return t.reshape(n, length, HEADS, d).transpose(1, 2)

    qh, kh, vh = (heads(linear(x, w[i], b[i])) for i in range(3))
    scores = q(qh * math.sqrt(1.0 / d), -1) @ q(kh.transpose(-2, -1), -2)
    out = q(torch.softmax(scores, -1), -1) @ q(vh, pv_dim)
    out = out.transpose(1, 2).reshape(n, length, E)
    return linear(out, m.out_proj.weight.detach(), m.out_proj.bias.detach())


def test_quantized_attention_blocks_each_matmul_along_its_reduction_axis() -> None:
    _, converted = attention_pair(batch_first=True)
    x = heavy(3, 6, E)
    with torch.no_grad():
        out, _ = converted(x, x, x, need_weights=False)
        expected = reference_self_attention(converted, x)
        values_along_head_dim = reference_self_attention(converted, x, pv_dim=-1)
    assert_close(out, expected)
    assert not torch.allclose(out, values_along_head_dim)


def test_every_gemm_of_attention_is_quantized_once_per_operand() -> None:
    """Four projections and two matmuls: 6 x 6 operand quantizations per step (reduction
    blocking), each along an axis as long as its GEMM's reduction."""
    _, converted = attention_pair(batch_first=True)
    calls: list[tuple[Operand, int]] = []
    quantize_operand = converted.operand_quantizer(SPEC)

    def spy(spec: QuantSpec) -> Any:
        def record(t: Tensor, operand: Operand, dim: int) -> Tensor:
            calls.append((operand, t.shape[dim]))
            return quantize_operand(t, operand, dim)

        return record

    converted.operand_quantizer = spy
    x = heavy(3, 5, E).requires_grad_(True)
    converted(x, x, x)[0].sum().backward()
    n, length, d = 3, 5, E // HEADS
    rows = n * length  # projection weight gradients reduce over batch x sequence
    projection = {
        Operand.X_FORWARD: E, Operand.W_FORWARD: E, Operand.DY_DGRAD: E,
        Operand.W_DGRAD: E, Operand.DY_WGRAD: rows, Operand.X_WGRAD: rows,
    }  # fmt: skip
    scores = {  # Q·Kᵀ: [L, d] x [d, S]
        Operand.X_FORWARD: d, Operand.W_FORWARD: d, Operand.DY_DGRAD: length,
        Operand.W_DGRAD: length, Operand.DY_WGRAD: length, Operand.X_WGRAD: length,
    }  # fmt: skip
    values = {  # P·V: [L, S] x [S, d]
        Operand.X_FORWARD: length, Operand.W_FORWARD: length, Operand.DY_DGRAD: d,
        Operand.W_DGRAD: d, Operand.DY_WGRAD: length, Operand.X_WGRAD: length,
    }  # fmt: skip
    expected = sorted(
        [(op, size) for op, size in projection.items()] * 4
        + list(scores.items())
        + list(values.items()),
        key=str,
    )
    assert sorted(calls, key=str) == expected


def test_quantized_attention_rounding_is_seeded() -> None:
    _, converted = attention_pair()
    converted.quant = QuantSpec(FMT, forward_rounding="stochastic")
    x = heavy(5, 3, E)
    outs = []
    for seed in (1, 1, 2):
        converted.noise = NoiseStream(seed)
        outs.append(converted(x, x, x)[0])
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_round_master_weights_rounds_projection_and_output_weights() -> None:
    for kwargs in ({}, {"kdim": 6, "vdim": 4}):
        _, converted = attention_pair(**kwargs)
        weights = converted.gemm_weights()
        assert len(weights) == (2 if not kwargs else 4)
        assert weights[-1] is converted.out_proj.weight
        before = [w.detach().clone() for w in weights]
        round_master_weights(converted, "hbfp6")
        for w, old in zip(weights, before, strict=True):
            assert torch.equal(w, quantize(old, "hbfp6", 1))


# --- the trainer switch --------------------------------------------------------------------


class TinyTransformer(nn.Module):
    """Rows of a 28x28 image as 28 tokens, one attention layer, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(28, E)
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True)
        self.head = nn.Linear(E, 10)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x.squeeze(1))
        tokens = tokens + self.attn(tokens, tokens, tokens, need_weights=False)[0]
        return self.head(tokens.mean(1))


@pytest.mark.parametrize("quantize_attention", [False, True])
def test_train_config_switches_attention_quantization(
    monkeypatch: pytest.MonkeyPatch, quantize_attention: bool
) -> None:
    monkeypatch.setattr("hbfp_dse.training.assembly.build_model", lambda *args: TinyTransformer())
    g = torch.Generator().manual_seed(0)
    split = ImageSplit(
        torch.randint(0, 256, (16, 1, 28, 28), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (16,), generator=g),
    )
    data = DatasetPair(DATASET_INFO["mnist-5k"], split, split)
    config = TrainConfig(
        epochs=1,
        batch_size=8,
        device="cpu",
        schedule="hbfp8",
        quantize_attention=quantize_attention,
    )
    result = train(config, data=data)
    assert result.status == "done"
    kinds = [layer.kind for layer in result.layers]
    assert ("MultiheadAttention" in kinds) == quantize_attention
    assert result.epochs[0].formats.get("attn") == ("hbfp8" if quantize_attention else None)
