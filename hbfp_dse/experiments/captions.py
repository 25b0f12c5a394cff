"""Words for figures and tables: what a set of runs is (sweeps, models, data, epochs, seeds),
and a schedule in one line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .store import RunRecord

SHOWN = 3  # names listed before "+N more"


def subject(runs: Sequence[RunRecord]) -> str:
    """``quick: cnn on mnist-5k, 3 epochs, 2 seeds``; several values are listed (or given as
    a range for numbers), so that a figure says what it shows."""
    if not runs:
        return ""
    seeds: dict[tuple[str, str], set[int]] = {}
    for run in runs:
        seeds.setdefault((run.sweep, run.config_id), set()).add(run.seed)
    epochs = _span(int(r.config["epochs"]) for r in runs if "epochs" in r.config)
    counts = _span(len(s) for s in seeds.values())
    parts = [
        f"{_names(r.config.get('model', '?') for r in runs)} on "
        f"{_names(r.config.get('dataset', '?') for r in runs)}",
        *([f"{epochs} epoch{'' if epochs == '1' else 's'}"] if epochs else []),
        f"{counts} seed{'' if counts == '1' else 's'}",
    ]
    return f"{_names(r.sweep for r in runs)}: {', '.join(parts)}"


def _names(values: Iterable[Any]) -> str:
    found = list(dict.fromkeys(str(v) for v in values))  # in order of appearance, once each
    more = len(found) - SHOWN
    return ", ".join(found[:SHOWN]) + (f" +{more} more" if more > 0 else "")


def _span(values: Iterable[int]) -> str:
    found = sorted(set(values))
    if not found:
        return ""
    return str(found[0]) if len(found) == 1 else f"{found[0]}–{found[-1]}"


def schedule_text(schedule: Sequence[dict[str, Any]] | None) -> str:
    """``epochs 1–2: hbfp4, fc hbfp6; epoch 3: hbfp6``: per segment of equal formats, the
    format of most layers and the layers that differ from it."""
    if not schedule:
        return "-"
    parts = []
    for segment in schedule:
        first, last = (e + 1 for e in segment["epochs"])  # stored 0-based, inclusive
        when = f"epoch {first}" if first == last else f"epochs {first}–{last}"
        formats: dict[str, str] = segment["formats"]
        common = Counter(formats.values()).most_common(1)[0][0]
        others = [f"{layer} {fmt}" for layer, fmt in formats.items() if fmt != common]
        parts.append(f"{when}: {', '.join([common, *others])}")
    return "; ".join(parts)
