"""How one layer quantizes the operands of its three GEMMs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..errors import UserError
from ..formats import ROUNDINGS, FloatFormat, Format, Rounding, parse_format

Blocking = Literal["reduction", "reference", "emulator"]
BLOCKINGS: tuple[str, ...] = ("reduction", "reference", "emulator")


class Operand(Enum):
    """The six GEMM operands of a layer's training step."""

    X_FORWARD = "x_forward"
    W_FORWARD = "w_forward"
    DY_DGRAD = "dy_dgrad"
    W_DGRAD = "w_dgrad"
    DY_WGRAD = "dy_wgrad"
    X_WGRAD = "x_wgrad"

    @property
    def is_gradient(self) -> bool:
        return self in (Operand.DY_DGRAD, Operand.DY_WGRAD)


@dataclass(frozen=True)
class QuantSpec:
    """A layer's number format and how its GEMM operands are blocked and rounded.

    ``blocking="reduction"`` quantizes every operand of every GEMM along that GEMM's
    reduction axis from the full-precision tensor; ``"reference"`` takes the older
    emulator's reuse: X and W quantized once in the forward pass and reused, dY quantized
    once; ``"emulator"`` follows the semantics of that emulator's ``float_to_bfp_blocked``:
    the same reuse, with every tensor blocked along its last dimension (never checked bit
    for bit against its code).
    Gradient operands (dY) use ``backward_rounding``; X and W use ``forward_rounding``.
    """

    fmt: Format
    blocking: Blocking = "reduction"
    forward_rounding: Rounding = "nearest"
    backward_rounding: Rounding = "nearest"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmt", parse_format(self.fmt))
        if self.blocking not in BLOCKINGS:
            raise UserError(f"blocking {self.blocking!r} is not one of {', '.join(BLOCKINGS)}")
        for role, rounding in (
            ("forward", self.forward_rounding),
            ("backward", self.backward_rounding),
        ):
            if rounding not in ROUNDINGS:
                raise UserError(
                    f"{role} rounding {rounding!r} is not one of {', '.join(ROUNDINGS)}"
                )

    @property
    def is_identity(self) -> bool:
        return self.fmt == FloatFormat("fp32")

    def rounding(self, operand: Operand) -> str:
        return self.backward_rounding if operand.is_gradient else self.forward_rounding


@dataclass(frozen=True)
class Quantization:
    """How a run blocks and rounds its GEMM operands, whatever format each layer uses."""

    blocking: Blocking = "reduction"
    forward_rounding: Rounding = "nearest"
    backward_rounding: Rounding = "nearest"

    def spec(self, fmt: Format | str) -> QuantSpec | None:
        """The layer's specification in ``fmt``; None for FP32 (the layer runs unquantized)."""
        spec = QuantSpec(fmt, self.blocking, self.forward_rounding, self.backward_rounding)
        return None if spec.is_identity else spec
