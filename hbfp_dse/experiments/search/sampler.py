"""The search's samplers: TPE or NSGA-II, wrapped so that no point is proposed twice.

A trial's result is fixed by its point (up to training noise), so a repeat would spend a training
run to learn nothing. :class:`NoRepeatSampler` redraws proposals that repeat a tried point.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.search_space import intersection_search_space
from optuna.trial import FrozenTrial, TrialState

from .section import SearchSpace

# Trials that count toward the budget: PRUNED ones only repeat others, and a FAIL (crash,
# interrupt) is tried again.
EVALUATED = (TrialState.COMPLETE,)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

PointKey = tuple[tuple[str, Any], ...]


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    if space.sampler == "tpe":
        # One EI candidate: TPE proposes a draw from its model of the good trials, which walks
        # their neighbourhood; with the default 24 it kept proposing its incumbent in these
        # small categorical spaces. Five start-up trials (the anchors among them) leave more of
        # a short budget to the model. benchmarks/search.py, default space, mean evaluations to
        # the grid's best over 8 seeds: 82 with TPE's defaults, 54 with one candidate, 43 with
        # five start-up trials as well; random search 100.
        base: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=space.seed, n_ei_candidates=1, n_startup_trials=5
        )
    else:
        base = optuna.samplers.NSGAIISampler(seed=space.seed, population_size=space.population_size)
    return NoRepeatSampler(base, seed=space.seed)


def point_key(params: dict[str, Any]) -> PointKey:
    return tuple(sorted(params.items(), key=lambda item: item[0]))


def taken_points(study: optuna.Study) -> set[PointKey]:
    """The points of evaluated and running trials."""
    trials = study.get_trials(deepcopy=False, states=(*EVALUATED, TrialState.RUNNING))
    return {point_key(t.params) for t in trials if t.params}


class NoRepeatSampler(optuna.samplers.BaseSampler):
    """``base`` with its proposals redrawn while they repeat an evaluated or running point.

    TPE, left alone, proposes its incumbent again most of the time in these small categorical
    spaces. The wrapper draws whole points: ``base``'s joint proposal, completed by ``base``'s
    independent sampling (TPE's random start-up, the first NSGA-II generation). After
    ``retries`` repeats it draws points uniformly; a repeat that still gets through is skipped
    by the study (:func:`~hbfp_dse.experiments.search.study.run_search`).
    """

    def __init__(self, base: optuna.samplers.BaseSampler, seed: int, retries: int = 20) -> None:
        self.base = base
        self.retries = retries
        self._rng = random.Random(seed)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # No parameter is conditional, so every evaluated trial has the whole space.
        evaluated = study.get_trials(deepcopy=False, states=EVALUATED)
        return intersection_search_space(evaluated) if evaluated else {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        tried = taken_points(study)
        base_space = self.base.infer_relative_search_space(study, trial)
        for _ in range(self.retries):
            params = self.base.sample_relative(study, trial, base_space)
            for name, dist in search_space.items():
                if name not in params:
                    params[name] = self.base.sample_independent(study, trial, name, dist)
            if point_key(params) not in tried:
                return params
        for _ in range(self.retries):
            params = {name: _uniform(dist, self._rng) for name, dist in search_space.items()}
            if point_key(params) not in tried:
                break
        return params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng.seed()


def _uniform(dist: BaseDistribution, rng: random.Random) -> Any:
    if not isinstance(dist, CategoricalDistribution):
        raise TypeError(f"search parameters are categorical, not {type(dist).__name__}")
    return dist.to_external_repr(rng.randrange(len(dist.choices)))
