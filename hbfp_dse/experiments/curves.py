"""Training curves from the store: per epoch, each run's test accuracy, training loss and test
loss, a line per run in its configuration's stable colour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import plots, styles
from .captions import schedule_text
from .html_report import Tips
from .store import RunRecord
from .timings import samples_per_s, train_seconds

# Each panel: its title, the epoch value it draws and whether it is a percentage.
VALIDATION_PANEL = ("validation accuracy (%)", "val_acc", True)  # where runs hold a split out
PANELS = (
    ("test accuracy (%)", "test_acc", True),
    ("training loss", "train_loss", False),
    ("test loss", "test_loss", False),
)


def figure(runs: Sequence[RunRecord], target: float | None = None) -> Figure:
    """One panel per quantity of :data:`PANELS`; give only runs with epochs."""
    panels = _panels(runs)
    fig = Figure(figsize=(5 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels))
    names = _names(runs)
    for ax, (title, field, percent) in zip(axes, panels, strict=True):
        for run in runs:
            drawn = [e for e in run.epochs if getattr(e, field) is not None]
            if not drawn:
                continue
            epochs = [e.epoch + 1 for e in drawn]
            values = [getattr(e, field) * (100 if percent else 1) for e in drawn]
            (line,) = ax.plot(
                epochs,
                values,
                color=styles.colour(run.label),
                linestyle=styles.linestyle(run.label),
                marker="." if len(epochs) < 30 else None,
                linewidth=1.2,
                label=names[run.id],
            )
            line.set_gid(_gid(run, field))
        _axes(ax, title, log=not percent)
    for ax, (_, _, percent) in zip(axes, panels, strict=True):
        if target is not None and percent:
            ax.axhline(
                100 * target,
                color=plots.TARGET_COLOUR,
                linestyle=":",
                label=f"target ({100 * target:g}%)",
            )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize=8,
        ncols=math.ceil(len(labels) / 30),  # a long legend in columns, not off the page
    )
    fig.suptitle(plots.title(runs), fontsize=11)
    return fig


def _names(runs: Sequence[RunRecord]) -> dict[int, str]:
    """Each run's legend entry: its label, with its seed where a configuration has several,
    and its sweep where there are several."""
    seeds: dict[tuple[str, str], int] = {}
    for run in runs:
        seeds[run.sweep, run.config_id] = seeds.get((run.sweep, run.config_id), 0) + 1
    several = len({r.sweep for r in runs}) > 1
    return {
        r.id: (f"{r.sweep}/" if several else "")
        + r.label
        + (f" (seed {r.seed})" if seeds[r.sweep, r.config_id] > 1 else "")
        for r in runs
    }


def _axes(ax: Axes, title: str, log: bool) -> None:
    lows = [min(line.get_ydata()) for line in ax.get_lines()]
    highs = [max(line.get_ydata()) for line in ax.get_lines()]
    if log and lows and min(lows) > 0 and max(highs) > 10 * min(lows):
        ax.set_yscale("log")  # losses fall by decades
        plots.log_ticks(ax.yaxis, min(lows), max(highs))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def _gid(run: RunRecord, field: str) -> str:
    return f"run-{run.id}-{field}"


def tips(runs: Sequence[RunRecord]) -> Tips:
    """What hovering over each curve shows in the HTML report."""
    names = _names(runs)
    return {
        _gid(run, field): {
            "run": f"{run.id} ({names[run.id]})",
            "sweep": run.sweep,
            "status": run.status,
            "final test accuracy": f"{100 * run.epochs[-1].test_acc:.2f}%",
            "epochs": f"{len(run.epochs)} of {run.config.get('epochs', '?')}",
            "schedule": schedule_text(run.schedule),
        }
        for run in runs
        for _, field, _ in _panels(runs)
    }


def _panels(runs: Sequence[RunRecord]) -> tuple[tuple[str, str, bool], ...]:
    held = any(e.val_acc is not None for run in runs for e in run.epochs)
    return (VALIDATION_PANEL, *PANELS) if held else PANELS


def _row(run: RunRecord) -> dict[str, object]:
    """The run's line in the HTML report's table."""
    rate = samples_per_s(run)
    return {
        "run": run.id,
        "sweep": run.sweep,
        "label": run.label,
        "seed": run.seed,
        "status": run.status,
        "epochs": len(run.epochs),
        "final_val_acc_pct": "-" if run.final_val_acc is None else f"{100 * run.final_val_acc:.2f}",
        "final_test_acc_pct": f"{100 * run.epochs[-1].test_acc:.2f}",
        "best_test_acc_pct": f"{100 * max(e.test_acc for e in run.epochs):.2f}",
        "final_train_loss": f"{run.epochs[-1].train_loss:.4f}",
        "train_seconds": f"{train_seconds(run):.1f}",
        "samples_per_s": "-" if rate is None else f"{rate:.0f}",
    }


def save(path: Path, runs: Sequence[RunRecord], target: float | None = None) -> None:
    """PNG, SVG or PDF by suffix, or the interactive HTML report over a table of the runs."""
    plots.check_path(path)
    fig = figure(runs, target)
    plots.write(
        path,
        fig,
        f"hbfp-dse training curves: {fig.get_suptitle()}",
        [_row(r) for r in runs],
        tips(runs),
    )
