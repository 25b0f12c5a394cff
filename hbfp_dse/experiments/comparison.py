"""Configurations against a reference: the difference of mean test accuracy over seeds with
its 95% confidence interval, and the density ratio; what a claim such as "HBFP8 matches FP32"
needs, since two means with overlapping intervals may still differ, and vice versa."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import UserError
from .report import ConfigSummary

Verdict = Literal[
    "higher",
    "lower",
    "no difference detected",
    "one seed: cannot tell",
    "no spread over seeds: cannot tell",
]


@dataclass(frozen=True)
class Difference:
    """``summary``'s mean test accuracy minus ``reference``'s, in accuracy (not points)."""

    summary: ConfigSummary
    reference: ConfigSummary
    difference: float
    # Of the 95% interval of the difference; None for one seed, or no spread over the seeds.
    half_width: float | None

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.half_width is None:
            return None
        return self.difference - self.half_width, self.difference + self.half_width

    @property
    def verdict(self) -> Verdict:
        interval = self.interval
        if interval is None:
            if min(len(self.summary.done), len(self.reference.done)) < 2:
                return "one seed: cannot tell"
            return "no spread over seeds: cannot tell"
        if interval[0] > 0:
            return "higher"
        if interval[1] < 0:
            return "lower"
        return "no difference detected"

    @property
    def density_ratio(self) -> float | None:
        mine, theirs = self.summary.density, self.reference.density
        return None if mine is None or theirs is None else mine / theirs


def welch_half_width(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The half-width of the 95% confidence interval of mean(a) - mean(b), the seeds of each
    independent and their variances not assumed equal (Welch, Satterthwaite's degrees of
    freedom); None unless both have two values or more, and None where neither varies: seeds
    that happen to agree to the image say nothing about how far other seeds would spread."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    freedom = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    from scipy.stats import t as student_t  # a slow import: only where it is used

    return float(student_t.ppf(0.975, freedom)) * math.sqrt(va + vb)


def find(summaries: Sequence[ConfigSummary], label: str) -> ConfigSummary:
    """The configuration labelled ``label``; refused when none or several (of several
    sweeps) are, naming the choices."""
    found = [s for s in summaries if s.label == label]
    if len(found) == 1:
        return found[0]
    if found:
        sweeps = ", ".join(s.sweep for s in found)
        raise UserError(f"configuration {label!r} is in several sweeps ({sweeps}): give --sweep")
    known = ", ".join(sorted({s.label for s in summaries})) or "none stored"
    sweeps = {s.sweep for s in summaries}
    where = f" of sweep {next(iter(sweeps))}" if len(sweeps) == 1 else ""
    raise UserError(f"no configuration labelled {label!r} (configurations{where}: {known})")


def of_sweep(summaries: Sequence[ConfigSummary], sweep: str) -> list[ConfigSummary]:
    """The configurations of one sweep: only those share a reference's data and recipe."""
    return [s for s in summaries if s.sweep == sweep]


def reference_of(summaries: Sequence[ConfigSummary], label: str | None) -> ConfigSummary:
    """``label``'s configuration, or by default the FP32 one."""
    if label is not None:
        return find(summaries, label)
    fp32 = [s for s in summaries if s.is_fp32]
    if not fp32:
        raise UserError("no FP32 configuration is stored: give the reference with --against")
    if len(fp32) > 1:
        sweeps = ", ".join(sorted({s.sweep for s in fp32}))
        raise UserError(f"FP32 configurations of several sweeps ({sweeps}): give --sweep")
    return fp32[0]


def compare(summaries: Sequence[ConfigSummary], reference: ConfigSummary) -> list[Difference]:
    """Every finished configuration but the reference, against it."""
    base = [r.final_acc for r in reference.done]
    if not base:
        raise UserError(f"the reference {reference.label!r} has no finished run")
    differences = []
    for summary in summaries:
        values = [r.final_acc for r in summary.done]
        if summary is reference or not values:
            continue
        difference = statistics.fmean(values) - statistics.fmean(base)  # type: ignore[arg-type]
        half = welch_half_width(values, base)  # type: ignore[arg-type]
        differences.append(Difference(summary, reference, difference, half))
    return differences
