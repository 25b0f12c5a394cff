"""Where precision is lost: quantization-error statistics of GEMM operands.

For one operand, FP32 values x and their quantized values q:

- ``sqnr_db``: 10 log10(sum x^2 / sum (x - q)^2), inf when q == x;
- ``rel_l2``: ||x - q|| / ||x||;
- ``wasserstein``: the 1-D Wasserstein distance between the distributions of x and of q,
  divided by the standard deviation of x, on ``samples`` elements drawn at random (the same
  elements of both; all of them when there are fewer);
- ``flushed``: the share of the nonzero x that quantize to zero;
- ``saturated``: the share of x clamped to the largest magnitude of their scale (beyond it
  by more than half a step with nearest rounding, by anything with stochastic rounding), or
  quantized to Inf or NaN (an overflow in a format without saturation);
- ``exp_min``, ``exp_max``: the range of the scale exponents the nonzero x were quantized at
  (``formats.scales``: HBFP the exponent of the block's (or sub-block's) largest value, MX
  its E8M0 scale, an element format each element's own exponent: comparable within a
  family, not across families).

An attention layer quantizes its projections and both attention matmuls with one quantizer,
so its statistics for an operand sum all of them. A run of processes (DDP) records the
leader's share of each batch. The sampling generator starts from the run's seed each time a
run starts or resumes.

``probe.Probe`` collects them.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLES = 4096  # elements per operand and step for the Wasserstein distance
STATISTICS = ("sqnr_db", "rel_l2", "wasserstein", "flushed", "saturated", "exp_min", "exp_max")


@dataclass(frozen=True)
class OperandStatistics:
    """The statistics of one layer's operand over the sampled steps of one epoch."""

    layer: str
    operand: str  # an Operand's value: x_forward, w_forward, dy_dgrad, w_dgrad, ...
    format: str
    steps: int  # sampled steps (calls, where a layer quantizes an operand more than once)
    sqnr_db: float | None  # inf: no error; None: every value was zero
    rel_l2: float
    wasserstein: float
    flushed: float
    saturated: float
    exp_min: int | None  # None: every value was zero
    exp_max: int | None
