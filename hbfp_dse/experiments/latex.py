"""The results table as LaTeX: a booktabs ``tabular`` to ``\\input`` into a paper's table,
with the caption it needs as a comment above it."""

from __future__ import annotations

from collections.abc import Sequence

from .captions import subject
from .report import ConfigSummary

# Text-mode escapes: these characters are LaTeX syntax, and labels and names may hold them.
SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "–": "--",  # the ranges of captions.subject, in any input encoding
}
NONE = "---"  # an em dash: no value (one seed has no interval, no FP32 run no drop)
CAPTION = (
    "Final test accuracy (%, mean over seeds) with the half-width of its 95% confidence "
    "interval (--- for one seed), the drop from FP32 in points and the arithmetic density "
    "relative to FP32; bold: on the accuracy/density Pareto front."
)
VALIDATION_CAPTION = (
    "Validation accuracy: on the split held out of the training set, on which configurations "
    "are chosen."
)


def escape(text: str) -> str:
    """``text`` as LaTeX prints it verbatim in text mode."""
    return "".join(SPECIAL.get(character, character) for character in text)


def tabular(summaries: Sequence[ConfigSummary]) -> str:
    """The configurations as ``report`` lists them (give them in :func:`table_order`); a
    sweep column only where there are several sweeps. Needs ``\\usepackage{booktabs}``."""
    several = len({s.sweep for s in summaries}) > 1
    held = any(s.validation_accuracy is not None for s in summaries)
    headings = [
        *(["sweep"] if several else []),
        "configuration",
        "kind",
        *([r"val.\ accuracy (\%)"] if held else []),
        r"accuracy (\%)",
        r"95\% CI",
        "drop vs FP32",
        "density",
    ]
    what = subject([r for s in summaries for r in s.runs])
    lines = [
        f"% Caption: {escape(CAPTION)}"
        + (f" {escape(VALIDATION_CAPTION)}" if held else "")
        + (f" {escape(what)}." if what else ""),
        r"% Needs \usepackage{booktabs}.",
        rf"\begin{{tabular}}{{{'l' * (2 + several)}{'r' * (len(headings) - 2 - several)}}}",
        r"\toprule",
        " & ".join(headings) + r" \\",
        r"\midrule",
        *(" & ".join(_row(s, several, held)) + r" \\" for s in summaries),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def _row(s: ConfigSummary, several: bool, held: bool) -> list[str]:
    label = escape(s.label)
    validation = NONE if s.validation_accuracy is None else f"{100 * s.validation_accuracy:.2f}"
    return [
        *([escape(s.sweep)] if several else []),
        rf"\textbf{{{label}}}" if s.pareto else label,
        escape(s.kind),
        *([validation] if held else []),
        NONE if s.accuracy is None else f"{100 * s.accuracy:.2f}",
        NONE if s.accuracy_ci is None else f"{100 * s.accuracy_ci:.2f}",
        NONE if s.drop_vs_fp32 is None else f"${100 * s.drop_vs_fp32:+.2f}$",
        NONE if s.density is None else rf"{s.density:.2f}$\times$",
    ]
