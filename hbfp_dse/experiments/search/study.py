"""The study: create or resume it, bind it to its target and space, run it, read the best
trial and the history.

Objective and constraint. With ``sampler: tpe`` the study maximizes density alone; with
``nsga2`` it maximizes (accuracy, density) for the whole Pareto front. Either way every trial
stores the constraint ``target - accuracy``, feasible when <= 0, in the system attribute
``constraints`` (a list), which both samplers and optuna-dashboard read (the samplers'
``constraints_func`` arguments are deprecated since v5.0). The objectives are named
(``study.set_metric_names``). Trials also carry the user attributes ``accuracy``, ``density``
and ``schedule``. ``accuracy`` is the one chosen on: a trained trial's validation accuracy
(its test accuracy only where its runs hold out no validation split), and ``test_accuracy``
is reported beside it.

Repeats: a repeat that gets past :class:`~.sampler.NoRepeatSampler` ends PRUNED with the user
attribute ``repeats`` and is not trained.

Budget: ``n_trials`` counts the study's evaluated (COMPLETE) trials, so a resumed search (same
storage URL and study name) runs only what is left, several processes sharing one study stop
together at the total, and neither repeats nor failures (a crash, an interrupt) use it up.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from ...emulation import LayerInfo
from ...errors import UserError
from ...training.assembly import model_for
from ...training.config import TrainConfig
from ..space import check_boost_epochs, point_config
from .points import (
    LayerGroup,
    anchor_params,
    canonical_config,
    layer_groups,
    param_choices,
    params_point,
    proposal_params,
    space_size,
)
from .proposal import Proposal
from .sampler import EVALUATED, FINISHED, make_sampler, point_key
from .section import SearchSpace

ObjectiveFn = Callable[[optuna.Trial, TrainConfig], tuple[float, float]]

# The one constraint, target - accuracy, is stored as the list of constraint values that
# optuna-dashboard (0.21) reads; Optuna 5 reads that list too, naming its entries by index.
# (Optuna 5's trial.set_constraint stores per-name attributes the dashboard does not show.)
CONSTRAINTS_ATTR = "constraints"
CONSTRAINT = "0"
# The objectives by their number: density alone (TPE), or accuracy and density (NSGA-II).
METRIC_NAMES = {1: ["density vs FP32"], 2: ["accuracy", "density vs FP32"]}
_STUDY_ATTR = "hbfp_search"
# The fields that shape the parameters; the budget, seed and pruning may change on resume.
_SHAPE_FIELDS = {
    "first",
    "last",
    "middle",
    "boost_last_epochs",
    "boost_format",
    "scaling",
    "rounding",
    "sampler",
}


def check_target(target_acc: float) -> None:
    if not 0 < target_acc <= 1:
        raise UserError(f"target accuracy is a fraction in (0, 1], e.g. 0.9, got {target_acc}")


def create_study(
    storage: str | None,
    study_name: str,
    space: SearchSpace,
    target_acc: float,
    validation: float = 0.0,
) -> optuna.Study:
    """Create or resume the study. ``storage`` is a SQLAlchemy URL (Optuna's tables sit beside
    the store's ``hbfp_`` ones) or None for memory. A resumed study must have the same target,
    sampler, choices and validation share (what its objective is measured on): its stored
    trials are only comparable under those."""
    check_target(target_acc)
    directions = ["maximize"] if space.sampler == "tpe" else ["maximize", "maximize"]
    study = optuna.create_study(
        storage=_storage(storage),
        sampler=make_sampler(space),
        study_name=study_name,
        directions=directions,
        load_if_exists=True,
    )
    _bind(study, space, target_acc, validation)
    if study.metric_names is None:  # named for optuna-dashboard ("Objective 0" otherwise)
        with warnings.catch_warnings():  # flagged experimental since v3.2, and the way to do it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(METRIC_NAMES[len(directions)])
    return study


def _storage(url: str | None) -> optuna.storages.BaseStorage | None:
    if url is None:
        return None
    # SQLite: wait for a lock held by the store or another search process instead of failing.
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        # The heartbeat is flagged experimental, but it is how Optuna turns the RUNNING trials
        # of a killed process into FAILs, which the budget does not count: a resume redoes them.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=60, grace_period=300
        )


def _bind(study: optuna.Study, space: SearchSpace, target_acc: float, validation: float) -> None:
    wanted = {
        "target_acc": target_acc,
        "validation": validation,
        "space": space.model_dump(mode="json", include=_SHAPE_FIELDS),
    }
    stored = study.user_attrs.get(_STUDY_ATTR)
    if stored is None:
        study.set_user_attr(_STUDY_ATTR, wanted)
        return
    if stored["target_acc"] != target_acc:
        raise UserError(
            f"study {study.study_name!r} searches for accuracy >= {stored['target_acc']}, "
            f"not {target_acc}; give another study name"
        )
    # Studies from before validation splits chose on test accuracy, as validation 0 does.
    if stored.get("validation", 0.0) != validation:
        raise UserError(
            f"study {study.study_name!r} chooses on a validation share of "
            f"{stored.get('validation', 0.0)}, not {validation}; set 'validation' in the base "
            "to that, or give another study name"
        )
    changed = sorted(k for k in _SHAPE_FIELDS if stored["space"].get(k) != wanted["space"][k])
    if changed:
        raise UserError(
            f"study {study.study_name!r} was created with other search choices "
            f"({', '.join(changed)}); give another study name"
        )


def target_accuracy(study: optuna.Study) -> float:
    try:
        return float(study.user_attrs[_STUDY_ATTR]["target_acc"])
    except KeyError:
        raise UserError(f"study {study.study_name!r} was not created by create_study") from None


def enqueue_anchors(study: optuna.Study, space: SearchSpace, groups: list[LayerGroup]) -> None:
    """Queue the anchors ahead of sampled trials; ones already tried are not queued again."""
    for name, params in anchor_params(space, groups).items():
        study.enqueue_trial(params, user_attrs={"anchor": name}, skip_if_exists=True)


def enqueue_proposal(
    study: optuna.Study, space: SearchSpace, layers: Sequence[LayerInfo], proposal: Proposal
) -> None:
    """Queue an analysis's proposal (as the nearest point of the space) ahead of all else."""
    names = [layer.name for layer in layers]
    groups = layer_groups(space, names)
    params = proposal_params(space, groups, names, proposal.narrow, proposal.wide, proposal.boosted)
    study.enqueue_trial(params, user_attrs={"anchor": "analysis"}, skip_if_exists=True)


def run_search(
    study: optuna.Study,
    space: SearchSpace,
    base_config: TrainConfig,
    objective_fn: ObjectiveFn,
    n_trials: int | None = None,
    timeout: float | None = None,
) -> FrozenTrial | None:
    """Run the study until it holds ``n_trials`` evaluated trials (default: the space's
    budget), every point of the space is evaluated, or this call has run ``timeout`` seconds
    (default: the space's ``timeout_s``); return the densest feasible trial, if any.

    ``objective_fn(trial, config)`` trains (or models) ``config`` and returns (accuracy,
    density); an exception it raises fails the trial and ends the search. The trial's user
    attribute ``label`` describes its schedule.
    """
    check_boost_epochs(space.boost_last_epochs, base_config.epochs, "search")
    layers = model_for(base_config).layers
    groups = layer_groups(space, [layer.name for layer in layers])
    choices = param_choices(space, groups)
    target = target_accuracy(study)
    total = space.trials if n_trials is None else n_trials
    enqueue_anchors(study, space, groups)

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        params = {name: trial.suggest_categorical(name, values) for name, values in choices.items()}
        point = params_point(params, space, groups)
        config = canonical_config(point_config(point, base_config), layers)
        _skip_repeat(trial)
        trial.set_user_attr("schedule", config.schedule.model_dump(mode="json", exclude_none=True))
        trial.set_user_attr("label", point.describe())
        accuracy, density = objective_fn(trial, config)
        accuracy = _record_outcome(trial, target, accuracy, density)
        return density if len(study.directions) == 1 else (accuracy, density)

    stop = _StopAfter(total, space_size(choices))
    if evaluated_trials(study) < stop.limit:
        study.optimize(
            objective,
            timeout=space.timeout_s if timeout is None else timeout,
            callbacks=[stop],
        )
    return best_feasible_trial(study)


def _skip_repeat(trial: optuna.Trial) -> None:
    """Raise TrialPruned where the trial repeats an evaluated or running one (rare: see
    :class:`~.sampler.NoRepeatSampler`); the budget does not count it."""
    point = point_key(trial.params)
    for other in trial.study.get_trials(deepcopy=False, states=(*EVALUATED, TrialState.RUNNING)):
        if other.number != trial.number and point_key(other.params) == point:
            trial.set_user_attr("repeats", other.number)
            raise optuna.TrialPruned(f"repeats trial {other.number}")


def evaluated_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=EVALUATED))


@dataclass(frozen=True)
class _StopAfter:
    """Stop once ``total`` trials were evaluated in the whole study (all processes that share
    it), or every point of the space was."""

    total: int
    size: int

    @property
    def limit(self) -> int:
        return min(self.total, self.size)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if evaluated_trials(study) >= self.limit:
            study.stop()


def _record_outcome(trial: optuna.Trial, target: float, accuracy: float, density: float) -> float:
    """Store a trial's accuracy, density and constraint; returns the accuracy used. A NaN
    accuracy (a diverged run) counts as 0: infeasible, and never the best."""
    if not math.isfinite(density) or density <= 0:
        raise ValueError(f"trial {trial.number}: density must be a positive number, got {density}")
    accuracy = accuracy if math.isfinite(accuracy) else 0.0
    trial.set_user_attr("accuracy", accuracy)
    trial.set_user_attr("density", density)
    trial.storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_ATTR, [target - accuracy])
    return accuracy


def is_feasible(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE and all(v <= 0 for v in trial.constraints.values())


def best_feasible_trial(study: optuna.Study) -> FrozenTrial | None:
    """The densest feasible trial; ties go to the more accurate, then the earlier one."""
    feasible = [t for t in study.get_trials(deepcopy=False) if is_feasible(t)]
    return max(
        feasible,
        key=lambda t: (t.user_attrs["density"], t.user_attrs["accuracy"], -t.number),
        default=None,
    )


def search_history(study: optuna.Study) -> list[tuple[int, float | None]]:
    """(trial number, best feasible density among trials up to it) for every finished trial."""
    history: list[tuple[int, float | None]] = []
    best: float | None = None
    for trial in sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number):
        if is_feasible(trial):
            density = float(trial.user_attrs["density"])
            best = density if best is None else max(best, density)
        history.append((trial.number, best))
    return history
