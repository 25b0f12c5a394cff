"""The three GEMMs of training (forward, data gradient, weight gradient) and the records of a
layer's work in them, as ``macs.count_macs`` counts it and ``density`` prices it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GemmRole = Literal["forward", "dgrad", "wgrad"]
GEMM_ROLES: tuple[GemmRole, ...] = ("forward", "dgrad", "wgrad")


@dataclass(frozen=True)
class AttentionShape:
    """The two attention matmuls of a multi-head attention call, per sample: ``heads`` of
    ``head_dim`` over ``queries`` x ``keys`` positions. Each of ``Q·Kᵀ`` and ``P·V`` does
    ``matmul_macs`` MACs in each of its three GEMMs (forward, dgrad, wgrad)."""

    heads: int
    head_dim: int
    queries: int
    keys: int

    @property
    def matmul_macs(self) -> int:
        return self.heads * self.queries * self.keys * self.head_dim


@dataclass(frozen=True)
class LayerMACs:
    """One GEMM layer's work per sample, summed over its calls in a forward pass.

    ``dgrad`` and ``wgrad`` equal ``forward`` where they are computed: each forward product
    ``x·w`` has exactly one data-gradient product ``dy·w`` and one weight-gradient product
    ``dy·x``, strides, padding and groups included. ``dgrad`` is 0 where the layer's input
    depends on no trainable parameter (the first layer sees the raw data), ``wgrad`` where the
    weight is frozen. ``weight_elements`` and ``input_elements`` (per sample) size the GEMM
    operands for the storage footprint.
    """

    name: str
    module_type: str
    forward: int
    dgrad: int
    wgrad: int
    weight_elements: int
    input_elements: int
    attention: AttentionShape | None = None  # for a multi-head attention layer

    def macs(self, role: GemmRole) -> int:
        return {"forward": self.forward, "dgrad": self.dgrad, "wgrad": self.wgrad}[role]

    @property
    def total(self) -> int:
        return self.forward + self.dgrad + self.wgrad
