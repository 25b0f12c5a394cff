"""Summaries of stored runs: accuracy over seeds, density, the Pareto front and the best
configuration for a target accuracy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..training.config import TEXT_DATASETS
from .store import FINISHED_STATUSES, AttemptRecord, RunRecord
from .timings import timing_json


@dataclass
class ConfigSummary:
    """The runs of one configuration (the same resolved settings, any seed)."""

    sweep: str
    config_id: str
    label: str
    kind: str
    runs: list[RunRecord]
    density: float | None
    pareto: bool = False
    drop_vs_fp32: float | None = None  # the sweep's FP32 accuracy minus this one's

    @property
    def is_fp32(self) -> bool:
        """Whether every layer trains in FP32 in every epoch."""
        segments = self.schedule or []
        return bool(segments) and all(
            fmt == "fp32" for segment in segments for fmt in segment["formats"].values()
        )

    @property
    def done(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "done" and r.final_acc is not None]

    @property
    def accuracy(self) -> float | None:
        done = self.done
        return statistics.fmean(r.final_acc for r in done) if done else None  # type: ignore[misc]

    @property
    def accuracy_std(self) -> float | None:
        """The sample standard deviation over seeds; None for fewer than two."""
        done = [r.final_acc for r in self.done]
        return statistics.stdev(done) if len(done) > 1 else None  # type: ignore[arg-type]

    @property
    def accuracy_ci(self) -> float | None:
        """The half-width of the 95% confidence interval of the mean test accuracy over seeds
        (Student's t); None for fewer than two seeds, where there is none."""
        return _ci_half_width([r.final_acc for r in self.done])  # type: ignore[misc]

    @property
    def validation_accuracy(self) -> float | None:
        """The mean final accuracy on the validation split; None unless every finished run
        held one out (runs stored before validation splits existed hold none)."""
        values = [r.final_val_acc for r in self.done]
        if not values or any(v is None for v in values):
            return None
        return statistics.fmean(values)  # type: ignore[arg-type]

    @property
    def selected_on(self) -> str:
        """Which accuracy choices are made on: ``validation``, or ``test`` where there is
        no validation accuracy (which then overstates what the choice will reach)."""
        return "test" if self.validation_accuracy is None else "validation"

    @property
    def selection_accuracy(self) -> float | None:
        """The mean accuracy ``best`` and the search choose on (``selected_on``)."""
        return self.accuracy if self.validation_accuracy is None else self.validation_accuracy

    @property
    def selection_ci(self) -> float | None:
        if self.validation_accuracy is None:
            return self.accuracy_ci
        return _ci_half_width([r.final_val_acc for r in self.done])  # type: ignore[misc]

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the mean selection accuracy, where there is one."""
        mean, half = self.selection_accuracy, self.selection_ci
        return None if mean is None or half is None else (mean - half, mean + half)

    @property
    def test_loss(self) -> float | None:
        """The mean final test loss (cross-entropy in nats) of the finished runs read with
        their epochs."""
        losses = [r.epochs[-1].test_loss for r in self.done if r.epochs]
        return statistics.fmean(losses) if losses else None

    @property
    def language(self) -> bool:
        """Whether the runs predict tokens, whose loss is then also given as perplexity."""
        return self.config.get("dataset") in TEXT_DATASETS

    @property
    def perplexity(self) -> float | None:
        """exp of the mean test loss: the perplexity of the held-out text per token."""
        loss = self.test_loss
        return math.exp(loss) if loss is not None and self.language else None

    @property
    def status(self) -> str:
        statuses = sorted({r.status for r in self.runs})
        return statuses[0] if len(statuses) == 1 else ",".join(statuses)

    @property
    def schedule(self) -> list[Any] | None:
        return self.runs[0].schedule

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config


def _ci_half_width(values: Sequence[float]) -> float | None:
    """The half-width of the 95% confidence interval of the mean of ``values`` (Student's t);
    None for fewer than two, where there is none."""
    if len(values) < 2:
        return None
    from scipy.stats import t as student_t  # a slow import: only where there are seeds

    half = float(student_t.ppf(0.975, len(values) - 1))
    return half * statistics.stdev(values) / math.sqrt(len(values))


def summarize(runs: Sequence[RunRecord]) -> list[ConfigSummary]:
    """Group runs by sweep and configuration and mark the accuracy/density Pareto front."""
    groups: dict[tuple[str, str], ConfigSummary] = {}
    for run in runs:
        key = (run.sweep, run.config_id)
        if key not in groups:
            groups[key] = ConfigSummary(
                run.sweep, run.config_id, run.label, run.kind, [], run.density
            )
        groups[key].runs.append(run)
    summaries = list(groups.values())
    mark_pareto(summaries)
    _mark_drops(summaries)
    return summaries


def _mark_drops(summaries: Sequence[ConfigSummary]) -> None:
    fp32 = {s.sweep: s.accuracy for s in summaries if s.is_fp32 and s.accuracy is not None}
    for s in summaries:
        reference = fp32.get(s.sweep)
        if reference is not None and s.accuracy is not None:
            s.drop_vs_fp32 = reference - s.accuracy


def table_order(summaries: Sequence[ConfigSummary]) -> list[ConfigSummary]:
    """By sweep, then the densest first: how tables list configurations."""
    return sorted(summaries, key=lambda s: (s.sweep, -(s.density or 0.0), s.label))


def mark_pareto(summaries: Sequence[ConfigSummary]) -> None:
    """A configuration is on the front when no other is at least as accurate and as dense
    and strictly better in one of the two."""
    points = [
        (s, s.accuracy, s.density)
        for s in summaries
        if s.accuracy is not None and s.density is not None
    ]
    for s, acc, dens in points:
        s.pareto = not any(
            a >= acc and d >= dens and (a > acc or d > dens)  # type: ignore[operator]
            for other, a, d in points
            if other is not s
        )


def best_for_target(
    summaries: Sequence[ConfigSummary], target: float
) -> tuple[ConfigSummary | None, ConfigSummary | None]:
    """The densest configuration whose mean selection accuracy (validation, where the runs
    held a split out) reaches ``target`` (ties: the more accurate), and, when none does, the
    closest one below it. Test accuracy is reported, never chosen on, where there is a
    validation accuracy."""
    measured = [s for s in summaries if s.selection_accuracy is not None and s.density is not None]
    feasible = [s for s in measured if s.selection_accuracy >= target]  # type: ignore[operator]
    if feasible:
        return max(feasible, key=lambda s: (s.density, s.selection_accuracy)), None
    closest = max(measured, key=lambda s: (s.selection_accuracy, s.density), default=None)
    return None, closest


def decision_warnings(
    summaries: Sequence[ConfigSummary], winner: ConfigSummary | None, target: float
) -> list[str]:
    """What makes a choice for ``target`` less sure than it looks: runs not finished, a
    winner of one seed, or intervals that straddle the target."""
    warnings = []
    unfinished = sum(r.status not in FINISHED_STATUSES for s in summaries for r in s.runs)
    if unfinished:
        warnings.append(
            f"{unfinished} run(s) are not finished: the answer may change once they are"
        )
    if winner is None:
        return warnings
    if winner.selected_on == "test":
        warnings.append(
            f"{winner.label!r} was chosen on test accuracy: its runs hold out no validation "
            "split, so the accuracy it is chosen for overstates what it reaches; set "
            "'validation' in the sweep's base (the default for new sweeps) and train again"
        )
    if len(winner.done) < 2:
        warnings.append(
            f"{winner.label!r} has one seed: its accuracy has no confidence interval; "
            "give the sweep more seeds to be sure"
        )
    if winner.interval is not None and winner.interval[0] < target:
        low, high = winner.interval
        warnings.append(
            f"the 95% confidence interval of {winner.label!r}'s {winner.selected_on} accuracy "
            f"({low:.2%} to {high:.2%}) reaches below the target {target:.2%}"
        )
    rivals = [
        s.label
        for s in summaries
        if s is not winner
        and s.density is not None
        and winner.density is not None
        and s.density > winner.density
        and s.interval is not None
        and s.interval[1] >= target
    ]
    if rivals:
        warnings.append(
            "denser configurations whose 95% interval reaches the target could be as good: "
            + ", ".join(rivals)
        )
    return warnings


def environment_label(attempt: AttemptRecord) -> str:
    """What decides an attempt's numbers beside its configuration, in one line."""
    code = f"hbfp-dse {attempt.hbfp_version}"
    if attempt.git_commit:
        code += f" (git {attempt.git_commit[:10]}{', modified' if attempt.git_dirty else ''})"
    device = attempt.device.split(":")[0]
    return (
        f"{code}, torch {attempt.torch_version}, {device}, CPU threads {attempt.cpu_threads}, "
        f"TF32 {'on' if attempt.tf32 else 'off'}, "
        f"deterministic {'on' if attempt.deterministic else 'off'}"
    )


def environments(attempts: Mapping[int, Sequence[AttemptRecord]]) -> list[tuple[str, list[int]]]:
    """The environments runs trained in (by their latest attempt), each with its runs, the
    most common first: more than one means results may differ for that reason alone."""
    runs: dict[str, list[int]] = {}
    for run_id, tries in attempts.items():
        if tries:
            runs.setdefault(environment_label(tries[-1]), []).append(run_id)
    return sorted(runs.items(), key=lambda item: -len(item[1]))


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    data = asdict(attempt)
    data["started_at"] = attempt.started_at.isoformat()
    del data["run_id"]
    return data


def run_json(run: RunRecord, attempts: Sequence[AttemptRecord] = ()) -> dict[str, Any]:
    return {
        "id": run.id,
        "sweep": run.sweep,
        "label": run.label,
        "kind": run.kind,
        "config_id": run.config_id,
        "status": run.status,
        "seed": run.seed,
        "accuracy": run.final_acc,
        "best_accuracy": run.best_acc,
        "validation_accuracy": run.final_val_acc,
        "density": run.density,
        "density_vs_bf16": run.density_vs_bf16,
        "mac_share": run.mac_share,
        "device": run.device,
        "trial_number": run.trial_number,
        "error": run.error,
        "schedule": run.schedule,
        "attempts": [attempt_json(a) for a in attempts],
        "config": run.config,
        **timing_json(run),
        "epochs": [e.columns() for e in run.epochs],  # read with_epochs, or none
    }


def summary_json(summary: ConfigSummary) -> dict[str, Any]:
    return {
        "sweep": summary.sweep,
        "label": summary.label,
        "kind": summary.kind,
        "config_id": summary.config_id,
        "accuracy": summary.accuracy,
        "accuracy_std": summary.accuracy_std,
        "accuracy_ci95": summary.accuracy_ci,
        "validation_accuracy": summary.validation_accuracy,
        "validation_ci95": summary.selection_ci if summary.selected_on == "validation" else None,
        "selected_on": summary.selected_on,
        "drop_vs_fp32": summary.drop_vs_fp32,
        "test_loss": summary.test_loss,
        "perplexity": summary.perplexity,
        "density": summary.density,
        "seeds": len(summary.runs),
        "done": len(summary.done),
        "status": summary.status,
        "pareto": summary.pareto,
        "runs": [r.id for r in summary.runs],
        "schedule": summary.schedule,
    }


def schedule_config(summary: ConfigSummary) -> dict[str, Any]:
    """The configuration's schedule as a sweep file's baseline entry."""
    return {"label": summary.label, "schedule": _without_nulls(summary.config["schedule"])}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def search_history(runs: Sequence[RunRecord]) -> list[tuple[int, float | None]] | None:
    """Best feasible density against trial number for the searched runs of the latest target
    (a study searches for one target), or None when nothing was searched. Feasible as the
    search judged it: a finished trial whose selection (validation) accuracy reaches the
    target; a pruned one never is."""
    trials = [r for r in runs if r.trial_number is not None and r.search_target is not None]
    if not trials:
        return None
    target = max(trials, key=lambda r: r.id).search_target
    best: float | None = None
    history: list[tuple[int, float | None]] = []
    for run in sorted(
        (r for r in trials if r.search_target == target), key=lambda r: r.trial_number or 0
    ):
        accuracy = run.selection_acc if run.status == "done" else None
        if accuracy is not None and accuracy >= target and run.density is not None:  # type: ignore[operator]
            best = run.density if best is None else max(best, run.density)
        history.append((run.trial_number or 0, best))
    return history
