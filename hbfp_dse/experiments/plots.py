"""Plots of results: accuracy against density with the Pareto front, search history, and
heatmaps of the precision each layer loses."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure  # used without pyplot: no display, no global state
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

from ..errors import UserError
from .precision import Grid
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
                yerr=[100 * (s.accuracy_ci or 0.0) for s in points],  # 95% CI
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
    check_path(path)
    write(path, figure(summaries, history), "hbfp-dse report", table_html)


def check_path(path: Path) -> None:
    if path.suffix.lower() not in (".png", ".svg", ".pdf", ".html"):
        raise PlotPathError(path, "give a .png, .svg, .pdf or .html file")
    if not path.parent.exists():
        raise PlotPathError(path, f"directory {path.parent} does not exist")


def write(path: Path, fig: Figure, title: str, table_html: str = "") -> None:
    """``fig`` as ``path``'s suffix says; SVG keeps its text as text. A path that cannot be
    written (a directory, no permission, a full disk) is a :class:`PlotPathError`."""
    try:
        _write(path, fig, title, table_html)
    except OSError as err:
        raise PlotPathError(path, f"cannot be written: {err.strerror or err}") from None


def _write(path: Path, fig: Figure, title: str, table_html: str) -> None:
    with rc_context({"svg.fonttype": "none"}):
        if path.suffix.lower() != ".html":
            fig.savefig(path, dpi=120, bbox_inches="tight")  # nothing cut at the edges
            return
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    image = base64.b64encode(buffer.getvalue()).decode()
    heading = html.escape(title)
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{heading}</title>"
        f"<h1>{heading}</h1><img style='max-width: 100%' alt='{heading}' "
        f"src='data:image/png;base64,{image}'>{table_html}"
    )


def heatmaps(grids: Sequence[Grid], statistic: str, operands: str) -> Figure:
    """One panel per run: layers down, epochs across, the statistic's value in colour (and
    written in the cell where there is room), on one colour scale for all panels."""
    columns = min(len(grids), 3)
    rows = -(-len(grids) // columns)
    tallest = max(len(g.layers) for g in grids)
    widest = max(len(g.epochs) for g in grids)
    fig = Figure(
        figsize=(columns * (2.5 + 0.6 * widest), rows * (1.2 + 0.32 * tallest)),
        layout="constrained",
    )
    axes = fig.subplots(rows, columns, squeeze=False)
    values = [v for g in grids for row in g.values for v in row if v is not None]
    norm = _norm(statistic, values)
    # Bright: precision lost (a high distance, a low SQNR).
    colours = colormaps["viridis_r" if statistic == "sqnr_db" else "viridis"]
    image = None
    for ax, grid in zip(axes.flat, grids, strict=False):
        cells = np.array([[np.nan if v is None else v for v in row] for row in grid.values])
        image = ax.imshow(cells, aspect="auto", cmap=colours, norm=norm, interpolation="nearest")
        ax.set_yticks(range(len(grid.layers)), grid.layers, fontsize=7)
        ax.set_xticks(range(len(grid.epochs)), [str(e + 1) for e in grid.epochs], fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(grid.title, fontsize=9)
        if len(grid.layers) * len(grid.epochs) <= 400:
            for (i, j), value in np.ndenumerate(cells):
                if not np.isnan(value):
                    ax.text(
                        j,
                        i,
                        _short(value),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color=_text_colour(colours(norm(value))),
                    )
    for ax in list(axes.flat)[len(grids) :]:
        ax.set_visible(False)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9)
        bar.set_label(STATISTIC_LABELS[statistic])
    fig.suptitle(f"{STATISTIC_LABELS[statistic]} per layer and epoch, operands: {operands}")
    return fig


STATISTIC_LABELS = {
    "sqnr_db": "SQNR (dB)",
    "rel_l2": "relative L2 error",
    "wasserstein": "Wasserstein distance / std",
    "flushed": "share flushed to zero",
    "saturated": "share saturated",
}


def _text_colour(rgba: tuple[float, ...]) -> str:
    """White on dark cells, black on light ones."""
    red, green, blue = rgba[:3]
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def _norm(statistic: str, values: Sequence[float]) -> Normalize:
    # A log scale where the values span decades, unless a zero (which it cannot show) is among
    # them.
    if (
        statistic in ("wasserstein", "rel_l2")
        and values
        and min(values) > 0
        and max(values) > 10 * min(values)
    ):
        return LogNorm(min(values), max(values))
    if not values:
        return Normalize(0, 1)
    return Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)


def _short(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2g}"


def table_html(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return ""
    header = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table border='1' cellspacing='0'><tr>{header}</tr>{body}</table>"
