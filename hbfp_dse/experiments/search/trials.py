"""The search's trials as runs of the store: every trial trains through the sweep runner, so
``report`` and ``best`` see searched schedules beside the grid, and a trial that repeats an
already stored configuration reuses its result instead of training again."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ...errors import UserError
from ...training.assembly import model_for
from ...training.config import TrainConfig
from ..processes import reporting_outage, spawn_workers
from ..provenance import provenance
from ..registration import check_data, new_run
from ..runner import DATA_CACHE, Emit, FaultLimit, WorkerOptions, execute_run
from ..store import FINISHED_STATUSES, RunRecord, Store, worker_name
from ..sweepfile import PlannedRun, SweepSpec
from .points import layer_groups
from .proposal import Proposal
from .pruning import make_pruner
from .section import SearchSpace
from .study import (
    best_feasible_trial,
    create_study,
    enqueue_proposal,
    evaluated_trials,
    run_search,
    search_history,
)


class NoSearchSectionError(UserError):
    """A sweep file without the ``search:`` section a search needs."""

    def __init__(self, sweep: str) -> None:
        super().__init__(f"sweep {sweep!r} has no 'search:' section to search")
        self.sweep = sweep


@dataclass(frozen=True)
class SearchJob:
    """One search: the sweep it stores its trials in, its space, target and budget."""

    spec: SweepSpec
    spec_yaml: str
    source: Path | None
    space: SearchSpace
    target: float
    study_name: str
    trials: int | None = None
    timeout: float | None = None
    proposal: Proposal | None = None  # an analysis's, tried first

    @classmethod
    def for_sweep(
        cls,
        spec: SweepSpec,
        spec_yaml: str,
        source: Path | None,
        target: float,
        study_name: str | None = None,
        trials: int | None = None,
        timeout: float | None = None,
        proposal: Proposal | None = None,
    ) -> SearchJob:
        """The search of a sweep file's ``search:`` section; the study is named
        ``NAME@TARGET`` unless given."""
        if spec.search is None:
            raise NoSearchSectionError(spec.name)
        name = study_name or f"{spec.name}@{target:g}"
        return cls(spec, spec_yaml, source, spec.search, target, name, trials, timeout, proposal)

    @property
    def total_trials(self) -> int:
        return self.trials or self.space.trials


@dataclass(frozen=True)
class BestTrial:
    number: int
    accuracy: float  # what the search chose on: validation accuracy, where runs hold it out
    test_accuracy: float | None  # reported beside it (None: from before it was recorded)
    density: float
    schedule: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchOutcome:
    """What a study holds after a search: evaluated trials, the best feasible one and the
    best density against trial number."""

    study_name: str
    target: float
    evaluated: int
    best: BestTrial | None
    history: list[tuple[int, float | None]]


def study_outcome(study: optuna.Study, target: float) -> SearchOutcome:
    best = best_feasible_trial(study)
    return SearchOutcome(
        study_name=study.study_name,
        target=target,
        evaluated=evaluated_trials(study),
        best=None if best is None else _best(best),
        history=search_history(study),
    )


def _best(trial: FrozenTrial) -> BestTrial:
    return BestTrial(
        number=trial.number,
        accuracy=float(trial.user_attrs["accuracy"]),
        test_accuracy=trial.user_attrs.get("test_accuracy"),
        density=float(trial.user_attrs["density"]),
        schedule=trial.user_attrs["schedule"],
        params=dict(trial.params),
    )


class _StoreObjective:
    """Train (or look up) the trial's configuration as a run of the search's sweep."""

    def __init__(
        self,
        store: Store,
        sweep_id: int,
        job: SearchJob,
        options: WorkerOptions,
        emit: Emit,
        worker: str,
    ) -> None:
        self.store, self.sweep_id, self.job = store, sweep_id, job
        self.options, self.emit, self.worker = options, emit, worker
        self.faults = FaultLimit(options.max_faults)

    def __call__(self, trial: optuna.Trial, config: TrainConfig) -> tuple[float, float]:
        label = f"t{trial.number} {trial.user_attrs['label']}"[:200]
        planned = new_run(PlannedRun(label, "search", config))
        planned = replace(planned, trial_number=trial.number, search_target=self.job.target)
        (run_id,) = self.store.add_runs(self.sweep_id, [planned])
        self.store.adopt_trial(run_id, trial.number, self.job.target)
        run = self._settled_run(run_id, trial)
        accuracy = run.selection_acc if run.status in ("done", "pruned") else None
        trial.set_user_attr("test_accuracy", run.final_acc)  # reported, never chosen on
        return (accuracy if accuracy is not None else float("nan")), float(run.density or 0.0)

    def _settled_run(self, run_id: int, trial: optuna.Trial) -> RunRecord:
        trained = False  # training emits its own progress; a reused result emits here
        while True:
            run = self.store.run(run_id)
            if run.status in FINISHED_STATUSES:
                if not trained:
                    self._emit_reused(run)
                return run
            claimed = self.store.claim(
                self.sweep_id, self.worker, stale_after=self.options.stale_after, run_ids=[run_id]
            )
            if claimed is None:  # another worker trains it: wait for its result
                time.sleep(5)
                continue
            trained = True
            pruner = make_pruner(trial, self.job.space, TrainConfig.model_validate(claimed.config))
            trained_here = self.faults.attempt(
                functools.partial(
                    execute_run,
                    self.store,
                    claimed,
                    self.options,
                    emit=self.emit,
                    callbacks=[pruner] if pruner is not None else (),
                    data_cache=DATA_CACHE,
                )
            )
            if not trained_here:
                if (reason := self.faults.stop_reason) is not None:
                    stopped = {"event": "stopped", "worker": self.worker, "reason": reason}
                    self.emit({**stopped, "cause": "faults"})
                    trial.study.stop()
                # Unanswered, not infeasible: pruned trials count toward no budget, and their
                # points are sampled again.
                trial.set_user_attr("unanswered", str(self.faults.last))
                raise optuna.TrialPruned(f"not trained here: {self.faults.last}")

    def _emit_reused(self, run: RunRecord) -> None:
        self.emit(
            {
                "event": "finish",
                "worker": self.worker,
                "run_id": run.id,
                "status": run.status,
                "accuracy": run.final_acc,
            }
        )


def check_search(job: SearchJob) -> None:
    """What can fail before anything is written: a missing dataset, a layer group that
    matches no layer of the model, a proposal naming layers the model lacks."""
    check_data(job.spec)
    names = [layer.name for layer in model_for(job.spec.base).layers]
    layer_groups(job.space, names)
    if job.proposal is not None:
        job.proposal.check_layers(names)


def prepare(store: Store, job: SearchJob) -> int:
    """Create or check the study, and register the sweep (without its grid runs) so that
    trials can be stored under it. The study is made here, once, because processes that
    create Optuna's tables at the same time collide. Call :func:`check_search` first."""
    study = create_study(store.url, job.study_name, job.space, job.target, job.spec.base.validation)
    if job.proposal is not None:
        enqueue_proposal(study, job.space, model_for(job.spec.base).layers, job.proposal)
    sweep_id, _ = store.register(job.spec.name, job.spec_yaml, provenance(job.source), [])
    return sweep_id


def search_worker(
    store: Store,
    sweep_id: int,
    job: SearchJob,
    options: WorkerOptions,
    emit: Emit,
    worker: str | None = None,
) -> None:
    study = create_study(store.url, job.study_name, job.space, job.target, job.spec.base.validation)
    objective = _StoreObjective(store, sweep_id, job, options, emit, worker or worker_name())
    run_search(study, job.space, job.spec.base, objective, job.trials, job.timeout)


def _search_process(
    url: str, sweep_id: int, job: SearchJob, options: WorkerOptions, events: Any
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the parent shows progress
    store = Store(url, create=False)
    worker = worker_name()
    try:
        with reporting_outage(events.put, worker):
            search_worker(store, sweep_id, job, options, events.put, worker)
    finally:
        store.close()


def run_search_workers(
    store: Store,
    sweep_id: int,
    job: SearchJob,
    workers: Sequence[WorkerOptions],
    on_event: Emit,
) -> SearchOutcome:
    """Search with a process per worker's options, sharing one study; return what the study
    holds."""
    if len(workers) == 1:
        search_worker(store, sweep_id, job, workers[0], on_event)
    else:
        arguments = [(store.url, sweep_id, job, options) for options in workers]
        spawn_workers(_search_process, arguments, on_event)
    study = optuna.load_study(study_name=job.study_name, storage=store.url)
    return study_outcome(study, job.target)
