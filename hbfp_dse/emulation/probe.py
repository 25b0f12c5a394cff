"""Collecting the statistics of ``statistics.py`` while training.

A :class:`Probe` collects them during the steps it is enabled for, on the device, and sums
them over those steps: SQNR and relative error from the summed energies, the distance as a
mean, shares from summed counts, the exponent range over all. It draws its samples from a
generator of its own, so that training with a probe gives the same numbers as without.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..formats import Format
from ..formats.scales import element_scales
from .quant_spec import Operand
from .statistics import SAMPLES, OperandStatistics

# The sums kept per operand, in this order (float64 on the device).
_SUMS = ("signal", "noise", "distance", "steps", "nonzero", "flushed", "count", "saturated")
_NO_EXPONENT = 1 << 30


def wasserstein_1d(a: Tensor, b: Tensor) -> Tensor:
    """The 1-D Wasserstein distance between the empirical distributions of two samples of
    one size: the mean distance between their sorted values."""
    return (a.sort().values - b.sort().values).abs().mean()


def _sample(x: Tensor, q: Tensor, samples: int, generator: torch.Generator) -> tuple[Tensor, ...]:
    x, q = x.reshape(-1), q.reshape(-1)
    if x.numel() <= samples:
        return x, q
    # Drawn on the CPU, so that the same elements are chosen on any device; copied from
    # pinned memory, so that a GPU does not wait for the copy.
    index = torch.randint(x.numel(), (samples,), generator=generator)
    if x.device.type == "cuda":
        index = index.pin_memory()
    index = index.to(x.device, non_blocking=True)
    return x[index], q[index]


def operand_sums(
    x: Tensor,
    q: Tensor,
    fmt: Format,
    dim: int,
    samples: int,
    generator: torch.Generator,
    rounding: str = "nearest",
) -> tuple[Tensor, Tensor]:
    """One call's sums (``_SUMS``, float64) and exponent range ([min, max], int64) on the
    device, over the finite elements of ``x``. One that quantizes to Inf or NaN (an overflow,
    or an MX block holding an Inf) counts as saturated and is left out of the errors."""
    scales = element_scales(x, fmt, dim)
    x, q = x.detach().float(), q.detach().float()
    finite = x.isfinite()
    valid = finite & q.isfinite()
    x, q = torch.where(valid, x, 0.0), torch.where(valid, q, 0.0)
    error = x - q  # exact (Sterbenz) where q is within a factor of two of x or 0: all but outliers
    xs, qs = (t.double() for t in _sample(x, q, samples, generator))
    spread = xs.std(correction=0) if xs.numel() > 1 else xs.new_zeros(())
    distance = torch.where(spread > 0, wasserstein_1d(xs, qs) / spread, 0.0)
    nonzero = x != 0
    # Nearest rounding clamps only half a step above the largest value; stochastic rounding
    # would pass it from there on.
    limit = scales.clamped_above if rounding == "nearest" else scales.bound
    saturated = (finite & ~valid) | (valid & (x.abs() > limit))
    sums = torch.stack(
        [
            x.square().sum(dtype=torch.float64),  # squares rounded once, then summed in double
            error.square().sum(dtype=torch.float64),
            distance,
            xs.new_ones(()),
            nonzero.sum().double(),
            (nonzero & (q == 0)).sum().double(),
            finite.sum().double(),
            saturated.sum().double(),
        ]
    )
    exponent = scales.exponent.long()
    low = torch.where(nonzero, exponent, _NO_EXPONENT).amin()
    high = torch.where(nonzero, exponent, -_NO_EXPONENT).amax()
    return sums, torch.stack([low, high])


class Probe:
    """Statistics of every quantized operand while ``enabled``; :meth:`take` reads them."""

    def __init__(self, samples: int = SAMPLES, seed: int = 0) -> None:
        self.samples = samples
        self.enabled = False
        self._generator = torch.Generator().manual_seed(seed)
        self._sums: dict[tuple[str, Operand], tuple[str, Tensor, Tensor]] = {}

    def record(
        self,
        layer: str,
        operand: Operand,
        fmt: Format,
        dim: int,
        x: Tensor,
        q: Tensor,
        rounding: str = "nearest",
    ) -> None:
        sums, exponents = operand_sums(x, q, fmt, dim, self.samples, self._generator, rounding)
        key = (layer, operand)
        if key in self._sums:
            _, total, range_ = self._sums[key]
            total += sums
            range_[0] = torch.minimum(range_[0], exponents[0])
            range_[1] = torch.maximum(range_[1], exponents[1])
        else:
            self._sums[key] = (fmt.name, sums, exponents)

    def take(self) -> list[OperandStatistics]:
        """The statistics since the last take, in the order operands were first recorded
        (one read from the device), and a fresh start."""
        if not self._sums:
            return []
        keys = list(self._sums)
        sums = torch.stack([self._sums[k][1] for k in keys]).cpu().tolist()
        ranges = torch.stack([self._sums[k][2] for k in keys]).cpu().tolist()
        found = [
            _statistics(layer, operand, self._sums[(layer, operand)][0], total, exponents)
            for (layer, operand), total, exponents in zip(keys, sums, ranges, strict=True)
        ]
        self._sums.clear()
        return found


def _statistics(
    layer: str, operand: Operand, fmt: str, sums: Sequence[float], exponents: Sequence[int]
) -> OperandStatistics:
    total = dict(zip(_SUMS, sums, strict=True))
    signal, noise = total["signal"], total["noise"]
    low, high = exponents
    return OperandStatistics(
        layer=layer,
        operand=operand.value,
        format=fmt,
        steps=int(total["steps"]),
        sqnr_db=_decibels(signal, noise),
        rel_l2=math.sqrt(noise / signal) if signal > 0 else 0.0,
        wasserstein=total["distance"] / total["steps"],
        flushed=total["flushed"] / total["nonzero"] if total["nonzero"] else 0.0,
        saturated=total["saturated"] / total["count"] if total["count"] else 0.0,
        exp_min=None if low == _NO_EXPONENT else int(low),
        exp_max=None if high == -_NO_EXPONENT else int(high),
    )


def _decibels(signal: float, noise: float) -> float | None:
    if signal == 0:
        return None
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
