"""The search's trials as runs of the store: every trial trains through the sweep runner, so
``report`` and ``best`` see searched schedules beside the grid, and a trial that repeats an
already stored configuration reuses its result instead of training again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ..errors import UserError
from ..training.config import TrainConfig
from .runner import (
    DATA_CACHE,
    Emit,
    WorkerOptions,
    execute_run,
    provenance,
    run_fields,
    spawn_workers,
    split_threads,
)
from .search import SearchSpace, create_study, make_pruner, run_search
from .spec import PlannedRun, SweepSpec
from .store import Run, Store, worker_name

# Statuses whose accuracy is final for the search (a pruned run stopped below the target).
SETTLED = ("done", "pruned", "diverged", "failed")


@dataclass(frozen=True)
class SearchJob:
    spec: SweepSpec
    spec_yaml: str
    source: Path | None
    target: float
    study_name: str
    trials: int | None
    timeout: float | None


def default_study_name(spec: SweepSpec, target: float) -> str:
    return f"{spec.name}@{target:g}"


def trial_label(number: int, config: TrainConfig) -> str:
    """``t3 layer1.*=hbfp4 first=hbfp6 last=hbfp8 last1:hbfp6``: a trial's rules, short."""
    parts = [f"t{number}"]
    for rule in config.schedule.rules or ():
        if rule.epochs:
            part = f"last{rule.epochs[0].strip('-:')}:{rule.format}"
            if part not in parts:
                parts.append(part)
        else:
            parts.append(f"{','.join(map(str, rule.layers or ['all']))}={rule.format}")
    return " ".join(parts)[:200]


class _StoreObjective:
    """Train (or look up) the trial's configuration as a run of the search's sweep."""

    def __init__(
        self, store: Store, sweep_id: int, job: SearchJob, options: WorkerOptions, emit: Emit
    ) -> None:
        self.store, self.sweep_id, self.job = store, sweep_id, job
        self.options, self.emit = options, emit
        self.worker = worker_name()
        self.space: SearchSpace = job.spec.search  # type: ignore[assignment]

    def __call__(self, trial: optuna.Trial, config: TrainConfig) -> tuple[float, float]:
        planned = PlannedRun(trial_label(trial.number, config), "search", config)
        fields = run_fields(planned) | {
            "trial_number": trial.number,
            "search_target": self.job.target,
        }
        (run_id,) = self.store.add_runs(self.sweep_id, [fields])
        self.store.adopt_trial(run_id, trial.number, self.job.target)
        run = self._settled_run(run_id, trial)
        accuracy = run.final_acc if run.status in ("done", "pruned") else None
        return (accuracy if accuracy is not None else float("nan")), float(run.density or 0.0)

    def _settled_run(self, run_id: int, trial: optuna.Trial) -> Run:
        trained = False  # training emits its own progress; a reused result emits here
        while True:
            run = self.store.run(run_id)
            if run.status in SETTLED:
                if trained:
                    return run
                self.emit(
                    {
                        "event": "finish",
                        "worker": self.worker,
                        "run_id": run_id,
                        "status": run.status,
                        "accuracy": run.final_acc,
                    }
                )
                return run
            claimed = self.store.claim(
                self.sweep_id, self.worker, stale_after=self.options.stale_after, run_ids=[run_id]
            )
            if claimed is None:  # another worker trains it: wait for its result
                time.sleep(5)
                continue
            trained = True
            pruner = make_pruner(trial, self.space, TrainConfig.model_validate(claimed.config))
            execute_run(
                self.store,
                claimed,
                self.worker,
                self.options,
                emit=self.emit,
                callbacks=[pruner] if pruner is not None else (),
                data_cache=DATA_CACHE,
            )


def prepare(store: Store, job: SearchJob) -> int:
    """Check the data, create or check the study, and register the sweep (without its grid
    runs) so that trials can be stored under it. The study is made here, once, because
    processes that create Optuna's tables at the same time collide."""
    if job.spec.search is None:
        raise UserError(f"sweep {job.spec.name!r} has no 'search:' section")
    DATA_CACHE.get(job.spec.base)  # a missing dataset stops us before anything is written
    create_study(store.url, job.study_name, job.spec.search, job.target)
    sweep_id, _ = store.register(job.spec.name, job.spec_yaml, provenance(job.source), [])
    return sweep_id


def search_worker(
    store: Store, sweep_id: int, job: SearchJob, options: WorkerOptions, emit: Emit
) -> FrozenTrial | None:
    space = job.spec.search
    if space is None:
        raise UserError(f"sweep {job.spec.name!r} has no 'search:' section")
    study = create_study(store.url, job.study_name, space, job.target)
    objective = _StoreObjective(store, sweep_id, job, options, emit)
    return run_search(study, space, job.spec.base, objective, job.trials, job.timeout)


def _search_process(
    url: str, sweep_id: int, job: SearchJob, options: WorkerOptions, events: Any
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the parent shows progress
    store = Store(url, create=False)
    try:
        search_worker(store, sweep_id, job, options, events.put)
    finally:
        store.close()


def run_search_workers(
    store: Store,
    sweep_id: int,
    job: SearchJob,
    options: WorkerOptions,
    workers: int,
    on_event: Emit,
) -> optuna.Study:
    """Search with ``workers`` processes sharing one study; return the study."""
    if workers <= 1:
        search_worker(store, sweep_id, job, options, on_event)
    else:
        options = split_threads(options, workers)
        spawn_workers(_search_process, (store.url, sweep_id, job, options), workers, on_event)
    return optuna.load_study(study_name=job.study_name, storage=store.url)
