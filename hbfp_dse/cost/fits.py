"""Least-squares area models for the units the area table lacks (docs/cost-model.md).

Each model is linear in its coefficients: ``area = Σ c_i · feature_i(shape)``. The feature
functions say which circuit structure is assumed to drive the area; the coefficients come from
the table at load time, so a user-supplied table refits them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..lazy import lazy_module

# numpy loads when a table is fitted: commands that price nothing start without it.
np = lazy_module("numpy")

Features = Callable[..., tuple[float, ...]]


def ceil_log2(n: int) -> int:
    """Exact ``ceil(log2(n))`` for n >= 1 (no float rounding at powers of two)."""
    return (n - 1).bit_length()


def int_adder_features(width: int) -> tuple[float, ...]:
    # The source model fits integer adders with a line in the width.
    return (float(width), 1.0)


def int_multiplier_features(width: int) -> tuple[float, ...]:
    # ... and integer multipliers with a parabola (a width x width partial-product array).
    return (float(width * width), float(width), 1.0)


def float_adder_features(exp_bits: int, man_bits: int) -> tuple[float, ...]:
    # An FP adder's area is dominated by its alignment and normalisation shifters: two barrel
    # shifters over the significand plus hidden, guard, round and sticky bits, ceil(log2 w)
    # stages each. The exponent difference and adjustment grow linearly in the exponent width.
    w = man_bits + 4
    return (float(2 * w * ceil_log2(w)), float(exp_bits))


def float_multiplier_features(exp_bits: int, man_bits: int) -> tuple[float, ...]:
    # A p x p significand multiplier (p = stored mantissa + hidden bit), linear normalise/round
    # logic over p bits, and an exponent adder.
    p = man_bits + 1
    return (float(p * p), float(p), float(exp_bits))


@dataclass(frozen=True)
class AreaModel:
    """A fitted model: ``area(*shape) = Σ coefficients[i] · features(*shape)[i]`` in µm²."""

    name: str
    features: Features
    coefficients: tuple[float, ...]

    def __call__(self, *shape: int) -> float:
        terms = zip(self.coefficients, self.features(*shape), strict=True)
        return math.fsum(c * f for c, f in terms)


def fit(
    name: str,
    features: Features,
    samples: Mapping[tuple[int, ...], float],
    *,
    relative: bool,
) -> AreaModel:
    """Least-squares fit of ``features`` to ``samples`` (shape -> µm²).

    ``relative`` minimises relative rather than absolute errors, for samples spanning decades
    (the float rows run from 136 to 4,600 µm²). Raises ValueError when the samples cannot
    determine every coefficient.
    """
    if not samples:
        raise ValueError(f"the {name} fit has no rows to fit")
    rows = np.array([features(*shape) for shape in samples], dtype=np.float64)
    areas = np.array(list(samples.values()), dtype=np.float64)
    if np.linalg.matrix_rank(rows) < rows.shape[1]:
        raise ValueError(
            f"the {name} fit needs at least {rows.shape[1]} rows of distinct shapes, "
            f"got {len(samples)}: {sorted(samples)}"
        )
    weights = 1.0 / areas if relative else np.ones_like(areas)
    coef, *_ = np.linalg.lstsq(rows * weights[:, None], areas * weights, rcond=None)
    return AreaModel(name, features, tuple(float(c) for c in coef))
