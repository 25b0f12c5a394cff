"""MACs of every GEMM of training (forward, data gradient, weight gradient) per layer.

Counted from shapes seen on one dry forward pass. All counts are per training sample: multiply
by the samples an epoch processes for an epoch's work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CostError
from .gemms import AttentionShape, LayerMACs

# Subclasses (the emulation backend's quantized layers) are counted too. A multi-head
# attention is one layer: its four projections and its two attention matmuls.
GEMM_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


def count_macs(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    input_dtype: torch.dtype | None = None,
) -> tuple[LayerMACs, ...]:
    """Per-sample MACs of each Conv1d/2d/3d and Linear layer of ``model``, in call order.

    ``input_shape`` excludes the batch dimension, e.g. ``(1, 28, 28)``. The dry pass runs in
    eval mode (no BatchNorm statistics change; training modes are restored) on zeros of shape
    ``(batch_size, *input_shape)`` (of ``input_dtype``, default the parameters': int64 for
    token ids). Grad mode is on so that ``requires_grad`` marks the
    activations that depend on trainable parameters: a layer whose input does not needs no
    data gradient. Only module GEMMs are seen, ``nn.MultiheadAttention`` among them (see
    :func:`_attention_macs`); other functional matmuls are not counted.
    """
    if batch_size < 1:
        raise CostError(f"batch_size must be at least 1, got {batch_size}")
    if torch.is_inference_mode_enabled():
        # Inference tensors never require grad, which would hide every data gradient.
        raise RuntimeError("count_macs cannot run under torch.inference_mode()")
    names = {
        module: name for name, module in model.named_modules() if isinstance(module, GEMM_LAYERS)
    }
    if not names:
        raise CostError(f"{type(model).__name__} has no Conv1d/2d/3d or Linear layer to count")
    counts: dict[nn.Module, list[int]] = {}  # forward, dgrad, wgrad, input elements
    shapes: dict[nn.Module, AttentionShape] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Any) -> None:
        x = args[0]
        if isinstance(module, nn.MultiheadAttention):
            macs = _attention_macs(module, *args[:3])
            shapes[module] = _attention_shape(module, *args[:2])
        else:
            fwd = _forward_macs(module, x, output)
            weighted = module.weight.requires_grad
            macs = (fwd, fwd if x.requires_grad else 0, fwd if weighted else 0)
        if any(m % batch_size for m in macs) or x.numel() % batch_size:
            raise CostError(f"layer {names[module]!r}: work is not proportional to the batch")
        total = counts.setdefault(module, [0, 0, 0, 0])
        for role, m in enumerate(macs):
            total[role] += m // batch_size
        total[3] += x.numel() // batch_size

    parameter = next(model.parameters())
    dtype = input_dtype or parameter.dtype
    x = torch.zeros(batch_size, *input_shape, dtype=dtype, device=parameter.device)
    modes = [(module, module.training) for module in model.modules()]
    handles = [module.register_forward_hook(hook) for module in names]
    try:
        model.eval()
        with torch.enable_grad():
            model(x)
    except RuntimeError as err:
        shape = (batch_size, *input_shape)
        raise CostError(
            f"{type(model).__name__} does not run on inputs of shape {shape}: {err}"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return tuple(
        LayerMACs(
            name=names[module],
            module_type=_torch_class(module),
            forward=fwd,
            dgrad=dgrad,
            wgrad=wgrad,
            weight_elements=_weight_elements(module),
            input_elements=inputs,
            attention=shapes.get(module),
        )
        for module, (fwd, dgrad, wgrad, inputs) in counts.items()
    )


def _attention_shape(module: nn.MultiheadAttention, query: Tensor, key: Tensor) -> AttentionShape:
    length = _query_length(module, query)
    keys = _query_length(module, key) + int(module.bias_k is not None) + int(module.add_zero_attn)
    return AttentionShape(module.num_heads, module.head_dim, length, keys)


def _attention_macs(
    module: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor
) -> tuple[int, int, int]:
    """Forward, data-gradient and weight-gradient MACs of one attention call: the q, k, v and
    output projections (Linear GEMMs), and per head ``Q·Kᵀ`` ([L, d] x [d, S]) and ``P·V``
    ([L, S] x [S, d]), whose two gradient products each count as the matmul's dgrad (for its
    left operand, as a Linear's X) and wgrad (for its right one, as a Linear's W)."""
    embed = module.embed_dim
    queries = query.numel() // query.shape[-1]  # batch x L positions
    keys = key.numel() // key.shape[-1]  # batch x S
    batch = queries // _query_length(module, query)
    inputs = queries * embed * embed + keys * (key.shape[-1] + value.shape[-1]) * embed
    output = queries * embed * embed
    matmuls = 2 * batch * _attention_shape(module, query, key).matmul_macs
    weighted = module.out_proj.weight.requires_grad
    forward = inputs + output + matmuls
    dgrad = (inputs if query.requires_grad else 0) + output + matmuls
    wgrad = (inputs + output if weighted else 0) + matmuls
    return forward, dgrad, wgrad


def _query_length(module: nn.MultiheadAttention, sequence: Tensor) -> int:
    """Positions of a query (or key) sequence, unbatched or batched in either layout."""
    if sequence.dim() == 2:
        return sequence.shape[0]
    return sequence.shape[1] if module.batch_first else sequence.shape[0]


def _weight_elements(module: nn.Module) -> int:
    if isinstance(module, nn.MultiheadAttention):
        return sum(p.numel() for n, p in module.named_parameters() if n.endswith("weight"))
    return module.weight.numel()


def _torch_class(module: nn.Module) -> str:
    # The layer's torch class: the emulation backend's QuantConv2d counts as Conv2d.
    return next(c.__name__ for c in type(module).__mro__ if c.__module__.startswith("torch."))


def _forward_macs(module: nn.Module, x: Tensor, y: Tensor) -> int:
    if isinstance(module, nn.Linear):
        # Every row of the input (all leading dimensions) is an in x out matrix-vector product.
        return x.numel() * module.out_features
    # Conv: N·(output positions)·C_out·(C_in/groups)·prod(kernel).
    conv: nn.Conv1d | nn.Conv2d | nn.Conv3d = module  # type: ignore[assignment]
    return y.numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)
