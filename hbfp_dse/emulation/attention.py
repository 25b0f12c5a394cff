"""Multi-head attention whose GEMMs all run on quantized operands (opt-in: ``convert``).

A converted ``nn.MultiheadAttention`` is one quantized layer. Its q, k, v and output
projections run as quantized linears (one GEMM each), and the two attention matmuls,
scores ``Q·Kᵀ`` (reduced along head_dim) and ``P·V`` (reduced along the keys), run through
:class:`QuantMatmulFunction`, whose three GEMMs block every operand along that GEMM's
reduction axis, as a Linear layer's do. Scaling, masks, softmax and dropout stay FP32.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functions import OperandQuantizer, QuantLinearFunction
from .layers import QuantizedLayer
from .quant_spec import Blocking, Operand


class QuantMatmulFunction(torch.autograd.Function):
    """``a @ b`` for ``a`` [..., m, k] and ``b`` [..., k, n] (same batch shape), quantized.

    Forward blocks ``a`` and ``b`` along k; ``da = dc·bᵀ`` blocks dc and b along n;
    ``db = aᵀ·dc`` blocks a and dc along m. ``a`` takes a Linear layer's X roles and ``b``
    its W roles (and their rounding); ``reference`` reuses the forward's quantized a and b
    and quantizes dc once, along n; ``emulator`` does too, with b blocked along its last
    dimension, n.
    """

    @staticmethod
    def forward(
        ctx: Any, a: Tensor, b: Tensor, quantize: OperandQuantizer, blocking: Blocking
    ) -> Tensor:
        aq = quantize(a, Operand.X_FORWARD, -1)
        bq = quantize(b, Operand.W_FORWARD, -1 if blocking == "emulator" else -2)
        reference = blocking != "reduction"
        ctx.quantize, ctx.reference = quantize, reference
        if reference:
            ctx.save_for_backward(aq, bq)
        else:
            ctx.save_for_backward(a, b)
        return aq @ bq

    @staticmethod
    def backward(ctx: Any, dc: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.saved_tensors
        quantize: OperandQuantizer = ctx.quantize
        need_a, need_b = ctx.needs_input_grad[:2]
        if ctx.reference:
            dc_a = dc_b = quantize(dc, Operand.DY_DGRAD, -1)
            b_a, a_b = b, a
        else:
            dc_a = quantize(dc, Operand.DY_DGRAD, -1) if need_a else None
            b_a = quantize(b, Operand.W_DGRAD, -1) if need_a else None
            dc_b = quantize(dc, Operand.DY_WGRAD, -2) if need_b else None
            a_b = quantize(a, Operand.X_WGRAD, -2) if need_b else None
        da = dc_a @ b_a.transpose(-2, -1) if need_a else None
        db = a_b.transpose(-2, -1) @ dc_b if need_b else None
        return da, db, None, None


class QuantMultiheadAttention(nn.MultiheadAttention, QuantizedLayer):
    """``nn.MultiheadAttention`` computed with explicit, quantized GEMMs when its spec is
    active; with no spec or ``fp32`` it is exactly ``nn.MultiheadAttention``."""

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        spec = self.active_spec()
        if spec is None:
            return super().forward(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        if is_causal and attn_mask is None:
            # As torch: is_causal is only a hint about the mask given.
            raise RuntimeError("Need attn_mask if specifying the is_causal hint.")
        quantize = self.operand_quantizer(spec)
        batched = query.dim() == 3
        # Work batch first: [N, L, E].
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        out, weights = self._attend(
            query,
            key,
            value,
            _additive(key_padding_mask, query.dtype),
            _additive(attn_mask, query.dtype),
            quantize,
            spec.blocking,
        )
        if not need_weights:
            returned = None
        else:
            returned = weights.mean(dim=1) if average_attn_weights else weights
        if not batched:
            return out.squeeze(0), None if returned is None else returned.squeeze(0)
        return (out if self.batch_first else out.transpose(0, 1)), returned

    def _attend(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None,
        attn_mask: Tensor | None,
        quantize: OperandQuantizer,
        blocking: Blocking,
    ) -> tuple[Tensor, Tensor]:
        """Attention on batch-first inputs; returns the output and per-head weights."""

        def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
            return QuantLinearFunction.apply(x, weight, bias, quantize, blocking)

        if self._qkv_same_embed_dim:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        biases = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        q = linear(query, w_q, biases[0])
        k = linear(key, w_k, biases[1])
        v = linear(value, w_v, biases[2])
        n, tgt, heads, head_dim = q.shape[0], q.shape[1], self.num_heads, self.head_dim
        if self.bias_k is not None and self.bias_v is not None:  # one learned key/value more
            k = torch.cat([k, self.bias_k.expand(n, 1, -1)], 1)
            v = torch.cat([v, self.bias_v.expand(n, 1, -1)], 1)
            attn_mask, key_padding_mask = _pad(attn_mask), _pad(key_padding_mask)
        q, k, v = (t.reshape(n, t.shape[1], heads, head_dim).transpose(1, 2) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = k.new_zeros(n, heads, 1, head_dim)
            k, v = torch.cat([k, zeros], 2), torch.cat([v, zeros], 2)
            attn_mask, key_padding_mask = _pad(attn_mask), _pad(key_padding_mask)
        q = q * math.sqrt(1.0 / head_dim)  # as torch, before the product
        scores = QuantMatmulFunction.apply(q, k.transpose(-2, -1), quantize, blocking)
        if attn_mask is not None:  # [L, S] or [N·heads, L, S]
            per_head = attn_mask.dim() == 3
            scores = scores + (attn_mask.view(n, heads, tgt, -1) if per_head else attn_mask)
        if key_padding_mask is not None:  # [N, S]
            scores = scores + key_padding_mask.view(n, 1, 1, -1)
        weights = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        out = QuantMatmulFunction.apply(weights, v, quantize, blocking)
        out = out.transpose(1, 2).reshape(n, tgt, heads * head_dim)
        return linear(out, self.out_proj.weight, self.out_proj.bias), weights

    def gemm_weights(self) -> list[Tensor]:
        if self._qkv_same_embed_dim:
            projections = [self.in_proj_weight]
        else:
            projections = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]
        return [*projections, self.out_proj.weight]


def _additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True: masked out) as the additive float mask torch makes of it."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, -math.inf)


def _pad(mask: Tensor | None) -> Tensor | None:
    """Let an appended key through (a zero column)."""
    return None if mask is None else F.pad(mask, (0, 1))
