"""Plots of results: accuracy against density with the Pareto front, search history, and
heatmaps of the precision each layer loses; PNG, SVG (text kept as text), PDF, or an
interactive HTML report."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure  # used without pyplot: no display, no global state
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ..errors import UserError
from . import html_report, styles
from .captions import schedule_text, subject
from .labels import Label, place
from .precision import Grid
from .report import ConfigSummary
from .store import RunRecord


class PlotPathError(UserError):
    """A plot file that cannot be written where or as asked."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"plot {path}: {reason}")
        self.path = path
        self.reason = reason


History = Sequence[tuple[int, float | None]]  # (trial number, best feasible density so far)

MARKERS = {"grid": "o", "search": "^", "baseline": "s"}
TARGET_COLOUR = "#b2182b"
LONGEST = 32  # characters of a point's label; longer ones are cut with an ellipsis


def figure(
    summaries: Sequence[ConfigSummary],
    history: History | None = None,
    target: float | None = None,
) -> Figure:
    """Accuracy against density with the Pareto front, FP32's accuracy and ``target`` as
    lines, beside the search history where there is one."""
    panels = 2 if history else 1
    fig = Figure(figsize=(8.5 + 6 * (panels - 1), 5.5), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer, to measure the labels
    axes = fig.subplots(1, panels, squeeze=False)[0]
    labels, points = _front(axes[0], summaries, target)
    if history:
        _history(axes[1], history)
    fig.suptitle(title(r for s in summaries for r in s.runs), fontsize=11)
    # The labels go where there is room once everything else has its place.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    place(axes[0], labels, points, fig.canvas.get_renderer())
    return fig


def title(runs: Iterable[RunRecord]) -> str:
    """What the runs are (sweep, model, data, epochs, seeds), wrapped for a figure."""
    return textwrap.fill(subject(list(runs)), 110)


def measured(summaries: Sequence[ConfigSummary]) -> list[tuple[str, ConfigSummary]]:
    """The configurations a figure can place, each with the id its point has in SVG."""
    return [
        (f"point-{i}", s)
        for i, s in enumerate(summaries)
        if s.accuracy is not None and s.density is not None
    ]


def _front(
    ax: Axes, summaries: Sequence[ConfigSummary], target: float | None
) -> tuple[list[Label], list[tuple[float, float]]]:
    """The points, the front and the lines; returns the labels to place and every point."""
    shown = measured(summaries)
    points = [(s.density, 100 * s.accuracy) for _, s in shown]  # type: ignore[operator]
    for (gid, s), (x, y) in zip(shown, points, strict=True):
        ci = s.accuracy_ci
        drawn = ax.errorbar(
            [x],
            [y],
            yerr=None if ci is None else [100 * ci],  # 95% CI
            fmt=MARKERS[s.kind],
            color=styles.colour(s.label) if s.kind == "baseline" else styles.KIND_COLOURS[s.kind],
            alpha=0.85,
            capsize=2,
        )
        drawn.lines[0].set_gid(gid)  # the SVG id the HTML report's hover finds
    front = sorted((p for p, (_, s) in zip(points, shown, strict=True) if s.pareto))
    if len(front) > 1:  # one point alone is no line
        ax.step(
            *zip(*front, strict=True),
            where="pre",  # the boundary of what the front dominates
            color="black",
            linewidth=1,
            label="Pareto front",
        )
    _reference_lines(ax, summaries, target)
    _density_axis(ax, [x for x, _ in points])
    ax.margins(0.08, 0.1)
    ax.set_xlabel("arithmetic density vs FP32 (x)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("accuracy against density", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    kinds = [
        Line2D([], [], marker=MARKERS[k], linestyle="none", color=styles.KIND_COLOURS[k], label=k)
        for k in MARKERS
        if any(s.kind == k for _, s in shown)
    ]
    if shown:
        # Outside the axes: the points and their labels keep all of the inside.
        handles = kinds + ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    labels = [
        Label(s.label if len(s.label) <= LONGEST else s.label[: LONGEST - 1] + "…", x, y)
        for (_, s), (x, y) in zip(shown, points, strict=True)
        if s.kind == "baseline" or s.pareto
    ]
    return labels, points


def _reference_lines(ax: Axes, summaries: Sequence[ConfigSummary], target: float | None) -> None:
    """FP32's mean accuracy (one line per sweep) and the target, dashed and dotted."""
    fp32 = [s for s in summaries if s.is_fp32 and s.accuracy is not None]
    several = len({s.sweep for s in fp32}) > 1
    for s in fp32:
        name = f"FP32, {s.sweep}" if several else "FP32"
        ax.axhline(
            100 * s.accuracy,  # type: ignore[operator]
            color=styles.colour("fp32"),
            linestyle="--",
            linewidth=1,
            label=f"{name} ({100 * s.accuracy:.2f}%)",  # type: ignore[operator]
        )
    if target is not None:
        ax.axhline(
            100 * target,
            color=TARGET_COLOUR,
            linestyle=":",
            linewidth=1.2,
            label=f"target ({100 * target:g}%)",
        )


def _density_axis(ax: Axes, densities: Sequence[float]) -> None:
    """Log where the densities span more than 8x (FP32 sits an order of magnitude below
    HBFP), linear otherwise; ``4.84x`` on the ticks."""
    if densities and max(densities) > 8 * min(densities):
        ax.set_xscale("log")
        log_ticks(ax.xaxis, min(densities), max(densities))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))


def log_ticks(axis: Axis, low: float, high: float) -> None:
    """Ticks at 1, 2 and 5 of every decade (every decade alone past three), so that a log
    axis reads across its range and not only at its powers of ten."""
    subs = (1.0, 2.0, 5.0) if math.log10(high / low) <= 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=30))
    axis.set_minor_formatter(NullFormatter())


def _history(ax: Axes, history: History) -> None:
    trials = [t for t, d in history if d is not None]
    densities = [d for _, d in history if d is not None]
    ax.step(trials, densities, where="post", marker=".")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("best feasible density (x FP32)")
    ax.set_title("search history", fontsize=10)
    ax.grid(True, alpha=0.3)


def tips(summaries: Sequence[ConfigSummary]) -> dict[str, dict[str, str]]:
    """What hovering over each point of :func:`figure` shows in the HTML report."""
    return {
        gid: {
            "configuration": s.label,
            "kind": s.kind,
            "sweep": s.sweep,
            "accuracy": f"{100 * s.accuracy:.2f}%"  # type: ignore[operator]
            + ("" if s.accuracy_ci is None else f" ± {100 * s.accuracy_ci:.2f} (95% CI)"),
            "density": f"{s.density:.2f}x FP32",
            "seeds": f"{len(s.done)} of {len(s.runs)} done",
            "schedule": schedule_text(s.schedule),
        }
        for gid, s in measured(summaries)
    }


def save(
    path: Path,
    summaries: Sequence[ConfigSummary],
    rows: Sequence[Mapping[str, object]],
    history: History | None = None,
    target: float | None = None,
) -> None:
    """PNG, SVG or PDF by suffix; ``.html`` is the interactive report over a table of
    ``rows``."""
    check_path(path)
    fig = figure(summaries, history, target)
    write(path, fig, f"hbfp-dse report: {fig.get_suptitle()}", rows, tips(summaries))


def check_path(path: Path) -> None:
    if path.suffix.lower() not in (".png", ".svg", ".pdf", ".html"):
        raise PlotPathError(path, "give a .png, .svg, .pdf or .html file")
    if not path.parent.exists():
        raise PlotPathError(path, f"directory {path.parent} does not exist")


def write(
    path: Path,
    fig: Figure,
    title: str,
    rows: Sequence[Mapping[str, object]] = (),
    hover: html_report.Tips | None = None,
) -> None:
    """``fig`` as ``path``'s suffix says; SVG keeps its text as text, and ``.html`` is the
    figure inline with ``hover`` for its elements over a table of ``rows``. A path that
    cannot be written (a directory, no permission, a full disk) is a :class:`PlotPathError`."""
    try:
        _write(path, fig, title, rows, hover or {})
    except OSError as err:
        raise PlotPathError(path, f"cannot be written: {err.strerror or err}") from None


def _write(
    path: Path,
    fig: Figure,
    title: str,
    rows: Sequence[Mapping[str, object]],
    hover: html_report.Tips,
) -> None:
    with rc_context({"svg.fonttype": "none"}):
        if path.suffix.lower() != ".html":
            fig.savefig(path, dpi=120, bbox_inches="tight")  # nothing cut at the edges
            return
        svg = io.StringIO()
        # No metadata: it names web addresses, and a page with none is plainly offline.
        bare = {"Creator": None, "Date": None, "Format": None, "Type": None}
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata=bare)
    path.write_text(html_report.page(title, svg.getvalue(), rows, hover))


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
