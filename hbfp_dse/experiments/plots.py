"""Plots of results: accuracy against density with the Pareto front, and search history."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # used without pyplot: no display, no global state
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

from ..errors import UserError
from .report import ConfigSummary


class PlotPathError(UserError):
    """A plot file that cannot be written where or as asked."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"plot {path}: {reason}")
        self.path = path
        self.reason = reason


History = Sequence[tuple[int, float | None]]  # (trial number, best feasible density so far)


def figure(summaries: Sequence[ConfigSummary], history: History | None = None) -> Figure:
    panels = 2 if history else 1
    fig = Figure(figsize=(7 * panels, 5))
    axes = fig.subplots(1, panels, squeeze=False)
    _front(axes[0][0], summaries)
    if history:
        _history(axes[0][1], history)
    fig.tight_layout()
    return fig


def _front(ax: Axes, summaries: Sequence[ConfigSummary]) -> None:
    measured = [s for s in summaries if s.accuracy is not None and s.density is not None]
    for kind, marker in (("grid", "o"), ("search", "^"), ("baseline", "s")):
        points = [s for s in measured if s.kind == kind]
        if points:
            ax.errorbar(
                [s.density for s in points],
                [100 * s.accuracy for s in points],  # type: ignore[operator]
                yerr=[100 * (s.accuracy_std or 0.0) for s in points],
                fmt=marker,
                alpha=0.7,
                label=kind,
                capsize=2,
            )
    front = sorted((s for s in measured if s.pareto), key=lambda s: s.density)  # type: ignore[arg-type, return-value]
    if front:
        ax.step(
            [s.density for s in front],
            [100 * s.accuracy for s in front],  # type: ignore[operator]
            where="pre",  # the boundary of what the front dominates
            color="black",
            linewidth=1,
            label="Pareto front",
        )
    for s in measured:
        if s.kind == "baseline" or s.pareto:
            ax.annotate(
                s.label if len(s.label) <= 32 else s.label[:31] + "…",
                (s.density, 100 * s.accuracy),  # type: ignore[arg-type, operator]
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    densities = [s.density for s in measured]
    if densities and max(densities) > 8 * min(densities):  # type: ignore[operator]
        ax.set_xscale("log")  # FP32 baselines sit an order of magnitude below HBFP
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
    ax.set_xlabel("arithmetic density vs FP32 (x)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("accuracy against density")
    ax.grid(True, which="both", alpha=0.3)
    if measured:
        ax.legend(loc="best", fontsize=8)


def _history(ax: Axes, history: History) -> None:
    trials = [t for t, d in history if d is not None]
    densities = [d for _, d in history if d is not None]
    ax.step(trials, densities, where="post", marker=".")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("best feasible density (x FP32)")
    ax.set_title("search history")
    ax.grid(True, alpha=0.3)


def save(
    path: Path,
    summaries: Sequence[ConfigSummary],
    history: History | None = None,
    table_html: str = "",
) -> None:
    """PNG, SVG or PDF by suffix; ``.html`` embeds the PNG beside a table of the runs."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg", ".pdf", ".html"):
        raise PlotPathError(path, "give a .png, .svg, .pdf or .html file")
    if not path.parent.exists():
        raise PlotPathError(path, f"directory {path.parent} does not exist")
    fig = figure(summaries, history)
    if suffix == ".html":
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
        image = base64.b64encode(buffer.getvalue()).decode()
        path.write_text(
            "<!doctype html><meta charset='utf-8'><title>hbfp-dse report</title>"
            f"<h1>hbfp-dse report</h1><img alt='accuracy against density' "
            f"src='data:image/png;base64,{image}'>{table_html}"
        )
    else:
        fig.savefig(path, dpi=120)


def table_html(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return ""
    header = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table border='1' cellspacing='0'><tr>{header}</tr>{body}</table>"
