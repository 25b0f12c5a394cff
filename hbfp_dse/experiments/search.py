"""Optuna search for the densest schedule that still reaches a target accuracy.

The ``search:`` section of a sweep file (:class:`SearchSpace`) gives, per layer group, the
mantissa widths and block sizes to choose from: the ``first`` layer, the ``last`` layer and the
``middle`` groups between them (name globs, or by default one group per top-level module prefix,
so ``layer1.*``, ``layer2.*``, ``layer3.*`` for CIFAR ResNets and one group for a small CNN).
Further choices: how many final epochs are boosted to ``boost_format``, the scaling levels and
the rounding. Each choice is one categorical Optuna parameter, named ``mantissa_bits[<group>]``,
``block_size[<group>]``, ``boost_last_epochs``, ``sub_block`` (``None``: one scaling level)
and ``rounding``.

Objective and constraint. With ``sampler: tpe`` the study maximizes density alone; with
``nsga2`` it maximizes (accuracy, density) for the whole Pareto front. Either way every trial
sets ``trial.set_constraint("accuracy", target - accuracy)``, feasible when <= 0: Optuna 5's
constraint API, which both samplers read (their ``constraints_func`` arguments are deprecated
since v5.0). Trials also carry the user attributes ``accuracy``, ``density`` and ``schedule``.

Pruning (:class:`PruneRule`, :class:`TargetPruner`): after epoch ``e`` (1-based) of ``E``, a
trial stops when ``e >= grace_epochs`` and ``test_acc + margin + margin_per_epoch * (E - e) <
target``. A stopped trial is not raised as ``TrialPruned``: its objective returns the accuracy
it reached, so it ends COMPLETE with its real density and a violated constraint. That keeps it
in NSGA-II's population (which only takes COMPLETE trials), lets TPE rank it among the
infeasible trials by how far it fell short, and keeps it out of the best trials. Its user
attribute ``stopped_at_epoch`` tells it apart.

Repeats: a trial's result is fixed by its point (up to training noise), so no point is trained
twice. :class:`NoRepeatSampler` redraws proposals that repeat a tried point; a repeat that still
gets through ends PRUNED with the user attribute ``repeats`` and is not trained.

Budget: ``n_trials`` counts the study's evaluated (COMPLETE) trials, so a resumed search (same
storage URL and study name) runs only what is left, several processes sharing one study stop
together at the total, and neither repeats nor failures (a crash, an interrupt) use it up.
"""

from __future__ import annotations

import fnmatch
import math
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.search_space import intersection_search_space
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..emulation import convert, layer_infos
from ..errors import UserError
from ..formats import FormatError, parse_format
from ..training.config import RuleConfig, ScheduleConfig, TrainConfig
from ..training.data import DATASET_INFO
from ..training.models import build_model

if TYPE_CHECKING:
    from ..training.trainer import EpochRecord

Rounding = Literal["nearest", "stochastic"]
ParamValue = int | str | None
Params = dict[str, ParamValue]
ObjectiveFn = Callable[[optuna.Trial, TrainConfig], tuple[float, float]]

CONSTRAINT = "accuracy"
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
# Trials that count toward the budget: PRUNED ones only repeat others, and a FAIL (crash,
# interrupt) is tried again.
_EVALUATED = (TrialState.COMPLETE,)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _distinct(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} choices must be distinct, got {values}")
    return values


class Choices(_Strict):
    """The mantissa widths (sign included) and block sizes one layer group may take."""

    mantissa_bits: list[int] = Field([4, 6, 8], min_length=1)
    block_size: list[int] = Field([64], min_length=1)

    @field_validator("mantissa_bits")
    @classmethod
    def _mantissas(cls, values: list[int]) -> list[int]:
        bad = [m for m in values if not 2 <= m <= 16]
        if bad:
            raise ValueError(f"mantissa widths must be in 2..16, got {bad}")
        return _distinct(values, "mantissa_bits")

    @field_validator("block_size")
    @classmethod
    def _blocks(cls, values: list[int]) -> list[int]:
        for b in values:
            try:
                parse_format(f"hbfp4_b{b}")
            except FormatError as err:
                raise ValueError(f"block size {b}: {err}") from None
        return _distinct(values, "block_size")


class MiddleChoices(Choices):
    """``groups``: ``auto`` (one group per top-level module prefix of the middle layers) or
    layer-name globs, each its own group; later globs win. ``["*"]`` is one group for all."""

    groups: Literal["auto"] | list[str] = "auto"

    @field_validator("groups")
    @classmethod
    def _globs(cls, value: Literal["auto"] | list[str]) -> Literal["auto"] | list[str]:
        if value == "auto":
            return value
        if not value:
            raise ValueError("give at least one glob, or 'auto'")
        for glob in value:
            if glob in ("first", "last") or glob.startswith("type:") or glob.lstrip("-").isdigit():
                raise ValueError(
                    f"middle groups are layer-name globs such as 'layer1.*', not {glob!r}"
                )
        return _distinct(value, "groups")


class Scaling(_Strict):
    """One level: one shared exponent per block. Two: a micro-exponent per ``sub_block``."""

    levels: Literal[1, 2] = 1
    sub_block: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _sub_block_iff_two_levels(self) -> Scaling:
        if (self.levels == 2) != (self.sub_block is not None):
            raise ValueError("give 'sub_block' exactly when 'levels' is 2")
        return self


class RoundingPair(_Strict):
    forward: Rounding = "nearest"
    backward: Rounding = "nearest"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"forward": value, "backward": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.forward if self.forward == self.backward else f"{self.forward}/{self.backward}"


class PruneRule(_Strict):
    """Stop a trial after epoch ``e`` of ``E`` (1-based) when ``e >= grace_epochs`` and
    ``test_acc + margin + margin_per_epoch * (E - e) < target``: even the margin's optimistic
    gain over the remaining epochs would not reach the target. Accuracies are fractions.
    The final epoch is never stopped: there is nothing left to save."""

    grace_epochs: int = Field(1, ge=0)
    margin: float = Field(0.05, ge=0)
    margin_per_epoch: float = Field(0.02, ge=0)

    def hopeless(self, test_acc: float, done: int, epochs: int, target: float) -> bool:
        remaining = epochs - done
        if done < self.grace_epochs or remaining <= 0:
            return False
        return test_acc + self.margin + self.margin_per_epoch * remaining < target


class SearchSpace(_Strict):
    """The ``search:`` section of a sweep file: the choices, the budget and the sampler."""

    first: Choices = Field(default_factory=Choices)
    last: Choices = Field(default_factory=Choices)
    middle: MiddleChoices = Field(default_factory=MiddleChoices)
    boost_last_epochs: list[int] = Field([0, 1], min_length=1)
    boost_format: str = "hbfp6"
    scaling: list[Scaling] = Field(default_factory=lambda: [Scaling()], min_length=1)
    rounding: list[RoundingPair] = Field(default_factory=lambda: [RoundingPair()], min_length=1)

    trials: int = Field(20, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    sampler: Literal["tpe", "nsga2"] = "tpe"
    seed: int = 0
    population_size: int = Field(10, ge=2, description="NSGA-II generation size")
    prune: PruneRule | None = Field(default_factory=PruneRule)

    @field_validator("boost_last_epochs")
    @classmethod
    def _boosts(cls, values: list[int]) -> list[int]:
        if any(n < 0 for n in values):
            raise ValueError(f"boost_last_epochs choices must be >= 0, got {values}")
        return _distinct(values, "boost_last_epochs")

    @field_validator("boost_format")
    @classmethod
    def _boost_format(cls, value: str) -> str:
        return parse_format(value).name

    @field_validator("scaling")
    @classmethod
    def _scalings(cls, values: list[Scaling]) -> list[Scaling]:
        return _distinct_by(values, lambda s: s.sub_block, "scaling")

    @field_validator("rounding")
    @classmethod
    def _roundings(cls, values: list[RoundingPair]) -> list[RoundingPair]:
        return _distinct_by(values, lambda r: r.label, "rounding")

    @model_validator(mode="after")
    def _sub_blocks_divide_blocks(self) -> SearchSpace:
        sub_blocks = [s.sub_block for s in self.scaling if s.sub_block is not None]
        for group, choices in (("first", self.first), ("last", self.last), ("middle", self.middle)):
            for b in choices.block_size:
                for s in sub_blocks:
                    if s >= b or b % s:
                        raise ValueError(
                            f"scaling sub_block {s} must be smaller than and divide every "
                            f"block_size of {group}, and {group} has block_size {b}"
                        )
        return self


def _distinct_by(values: list[Any], key: Callable[[Any], Any], what: str) -> list[Any]:
    _distinct([key(v) for v in values], what)
    return values


@dataclass(frozen=True)
class LayerGroup:
    """Layers that share one format per trial; ``label`` names its parameters."""

    label: str
    selectors: tuple[str, ...]  # schedule layer selectors
    choices: Choices


def layer_groups(space: SearchSpace, layer_names: Sequence[str]) -> list[LayerGroup]:
    """The groups in rule order: middle groups, then first, then last (later rules win, so the
    first and last layers take their own formats even where a middle glob matches them)."""
    if not layer_names:
        raise UserError("the model has no quantized layers to search over")
    middle = list(layer_names[1:-1])
    globs = _auto_globs(middle) if space.middle.groups == "auto" else space.middle.groups
    _check_cover(globs, middle)
    groups = [LayerGroup(glob, (glob,), space.middle) for glob in globs]
    return [
        *groups,
        LayerGroup("first", ("first",), space.first),
        LayerGroup("last", ("last",), space.last),
    ]


def _auto_globs(names: Sequence[str]) -> list[str]:
    # A quantized layer has no quantized children, so a dotted prefix never names a layer.
    prefixes = dict.fromkeys(name.split(".")[0] for name in names)
    return [p if p in names else f"{p}.*" for p in prefixes]


def _check_cover(globs: Sequence[str], middle: Sequence[str]) -> None:
    for glob in globs:
        if not any(fnmatch.fnmatchcase(name, glob) for name in middle):
            raise UserError(
                f"search.middle.groups: {glob!r} matches none of the middle layers "
                f"({', '.join(middle[:6])}{', ...' if len(middle) > 6 else ''})"
            )
    missed = [n for n in middle if not any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if missed:
        raise UserError(
            f"search.middle.groups leave layers without a group: {', '.join(missed[:6])}"
            f"{', ...' if len(missed) > 6 else ''}; add a glob such as '*'"
        )


def param_choices(space: SearchSpace, groups: Sequence[LayerGroup]) -> dict[str, list[ParamValue]]:
    """Every trial parameter and its choices; the search and a grid over it share these."""
    choices: dict[str, list[ParamValue]] = {}
    for group in groups:
        choices[_m(group)] = list(group.choices.mantissa_bits)
        choices[_b(group)] = list(group.choices.block_size)
    choices["boost_last_epochs"] = list(space.boost_last_epochs)
    choices["sub_block"] = [s.sub_block for s in space.scaling]
    choices["rounding"] = [r.label for r in space.rounding]
    return choices


def _m(group: LayerGroup) -> str:
    return f"mantissa_bits[{group.label}]"


def _b(group: LayerGroup) -> str:
    return f"block_size[{group.label}]"


def suggest_params(trial: optuna.Trial, choices: dict[str, list[ParamValue]]) -> Params:
    # Every parameter in every trial, none conditional: multivariate TPE models them jointly.
    return {name: trial.suggest_categorical(name, values) for name, values in choices.items()}


def config_from_params(
    params: Params, space: SearchSpace, groups: Sequence[LayerGroup], base: TrainConfig
) -> TrainConfig:
    """The training configuration of one point of the space. Boosted epochs raise a group to
    ``boost_format`` only where that is wider than the group's own mantissa."""
    boost = _int(params, "boost_last_epochs")
    boost_bits = parse_format(space.boost_format).mantissa_bits
    rules = []
    for group in groups:
        mantissa = _int(params, _m(group))
        fmt = _hbfp(mantissa, _int(params, _b(group)), params["sub_block"])
        rules.append(RuleConfig(format=fmt, layers=list(group.selectors)))
        if boost and mantissa < boost_bits:
            rules.append(
                RuleConfig(
                    format=space.boost_format, layers=list(group.selectors), epochs=[f"-{boost}:"]
                )
            )
    rounding = next(r for r in space.rounding if r.label == params["rounding"])
    return base.model_copy(
        update={
            "schedule": ScheduleConfig(rules=rules),
            "forward_rounding": rounding.forward,
            "backward_rounding": rounding.backward,
        }
    )


def _int(params: Params, name: str) -> int:
    value = params[name]
    if not isinstance(value, int):
        raise TypeError(f"parameter {name} must be an integer, got {value!r}")
    return value


def _hbfp(mantissa: int, block: int, sub_block: ParamValue) -> str:
    name = f"hbfp{mantissa}_b{block}" + (f"_s{sub_block}" if sub_block is not None else "")
    return parse_format(name).name


def trial_config(
    trial: optuna.Trial, space: SearchSpace, layer_names: Sequence[str], base: TrainConfig
) -> TrainConfig:
    """The training configuration the trial suggests: ``base`` with the trial's schedule
    (rules over ``layer_names``, the model's quantized layers) and rounding."""
    groups = layer_groups(space, layer_names)
    return config_from_params(
        suggest_params(trial, param_choices(space, groups)), space, groups, base
    )


# Anchors: (mantissa of the first layer, of the middle groups, of the last layer, boosted epochs).
ANCHORS: dict[str, tuple[int, int, int, int]] = {
    "hbfp8": (8, 8, 8, 0),
    "hbfp6": (6, 6, 6, 0),
    "booster": (6, 4, 6, 1),
}


def anchor_params(space: SearchSpace, groups: Sequence[LayerGroup]) -> dict[str, Params]:
    """The known-good points, as trial parameters. An anchor is defined by its mantissa widths:
    where a group cannot take its width the anchor is skipped with a warning. Its other settings
    take the nearest choice: block size nearest 64 (in log2), boosted epochs nearest the
    anchor's, one scaling level or else the largest sub-block, nearest rounding or else the
    first choice."""
    choices = param_choices(space, groups)
    anchors = {}
    for name, (first, middle, last, boost) in ANCHORS.items():
        widths = {g.label: {"first": first, "last": last}.get(g.label, middle) for g in groups}
        missing = [g.label for g in groups if widths[g.label] not in g.choices.mantissa_bits]
        if missing:
            warnings.warn(
                f"search anchor {name!r} skipped: no mantissa width "
                f"{', '.join(f'{widths[g]} for {g}' for g in missing)} in the space",
                stacklevel=2,
            )
            continue
        params: Params = {}
        for group in groups:
            params[_m(group)] = widths[group.label]
            params[_b(group)] = min(group.choices.block_size, key=lambda b: abs(math.log2(b / 64)))
        params["boost_last_epochs"] = min(space.boost_last_epochs, key=lambda n: abs(n - boost))
        params["sub_block"] = max(choices["sub_block"], key=lambda s: math.inf if s is None else s)
        params["rounding"] = (
            "nearest" if "nearest" in choices["rounding"] else choices["rounding"][0]
        )
        anchors[name] = params
    return anchors


def enqueue_anchors(study: optuna.Study, space: SearchSpace, groups: Sequence[LayerGroup]) -> None:
    """Queue the anchors ahead of sampled trials; ones already tried are not queued again."""
    for name, params in anchor_params(space, groups).items():
        study.enqueue_trial(params, user_attrs={"anchor": name}, skip_if_exists=True)


def create_study(
    storage: str | None, study_name: str, space: SearchSpace, target_acc: float
) -> optuna.Study:
    """Create or resume the study. ``storage`` is a SQLAlchemy URL (Optuna's tables sit beside
    the store's ``hbfp_`` ones) or None for memory. A resumed study must have the same target,
    sampler and choices: its stored trials are only comparable under those."""
    if not 0 < target_acc <= 1:
        raise UserError(f"target accuracy is a fraction in (0, 1], e.g. 0.9, got {target_acc}")
    directions = ["maximize"] if space.sampler == "tpe" else ["maximize", "maximize"]
    study = optuna.create_study(
        storage=_storage(storage),
        sampler=_sampler(space),
        study_name=study_name,
        directions=directions,
        load_if_exists=True,
    )
    _bind(study, space, target_acc)
    return study


def _sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
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


class NoRepeatSampler(optuna.samplers.BaseSampler):
    """``base`` with its proposals redrawn while they repeat an evaluated or running point.

    The space is small and categorical and a trial's result is (up to training noise) fixed by
    its point, so a repeat would spend a training run to learn nothing; TPE, left alone,
    proposes its incumbent again most of the time. The wrapper draws whole points: ``base``'s
    joint proposal, completed by ``base``'s independent sampling (TPE's random start-up, the
    first NSGA-II generation). After ``retries`` repeats it draws points uniformly; a repeat
    that still gets through is skipped by :func:`run_search`.
    """

    def __init__(self, base: optuna.samplers.BaseSampler, seed: int, retries: int = 20) -> None:
        self.base = base
        self.retries = retries
        self._rng = random.Random(seed)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # No parameter is conditional, so every evaluated trial has the whole space.
        evaluated = study.get_trials(deepcopy=False, states=_EVALUATED)
        return intersection_search_space(evaluated) if evaluated else {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        tried = _tried_points(study)
        base_space = self.base.infer_relative_search_space(study, trial)
        for _ in range(self.retries):
            params = self.base.sample_relative(study, trial, base_space)
            for name, dist in search_space.items():
                if name not in params:
                    params[name] = self.base.sample_independent(study, trial, name, dist)
            if _point(params) not in tried:
                return params
        for _ in range(self.retries):
            params = {name: _uniform(dist, self._rng) for name, dist in search_space.items()}
            if _point(params) not in tried:
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


def _point(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items(), key=lambda item: item[0]))


def _tried_points(study: optuna.Study) -> set[tuple[tuple[str, Any], ...]]:
    trials = study.get_trials(deepcopy=False, states=(*_EVALUATED, TrialState.RUNNING))
    return {_point(t.params) for t in trials if t.params}


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


def _bind(study: optuna.Study, space: SearchSpace, target_acc: float) -> None:
    wanted = {
        "target_acc": target_acc,
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


class TargetPruner:
    """A trainer callback: reports each epoch's test accuracy to the trial (single-objective
    studies only: Optuna has no intermediate values for several objectives) and stops the run
    when ``rule`` finds the target out of reach, recording ``stopped_at_epoch`` (0-based)."""

    def __init__(self, trial: optuna.Trial, target: float, epochs: int, rule: PruneRule) -> None:
        self.trial = trial
        self.target = target
        self.epochs = epochs
        self.rule = rule

    def on_epoch_end(self, record: EpochRecord) -> bool:
        if len(self.trial.study.directions) == 1:
            self.trial.report(record.test_acc, record.epoch)
        if self.rule.hopeless(record.test_acc, record.epoch + 1, self.epochs, self.target):
            self.trial.set_user_attr("stopped_at_epoch", record.epoch)
            return True
        return False


def make_pruner(
    trial: optuna.Trial, space: SearchSpace, config: TrainConfig
) -> TargetPruner | None:
    """The pruning callback for one trial's training, or None where the space disables it."""
    if space.prune is None:
        return None
    return TargetPruner(trial, target_accuracy(trial.study), config.epochs, space.prune)


def model_layer_names(config: TrainConfig) -> list[str]:
    """The quantized layers of the configuration's model, in module order."""
    info = DATASET_INFO.get(config.dataset)
    if info is None:
        raise UserError(f"unknown dataset {config.dataset!r}")
    model = build_model(config.model, info.num_classes, info.in_channels, info.image_size)
    return [layer.name for layer in layer_infos(convert(model))]


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
    density); an exception it raises fails the trial and ends the search.
    """
    if max(space.boost_last_epochs) > base_config.epochs:
        raise UserError(
            f"search.boost_last_epochs: {max(space.boost_last_epochs)} is more than the "
            f"{base_config.epochs} epochs of base"
        )
    names = model_layer_names(base_config)
    groups = layer_groups(space, names)
    size = _size(param_choices(space, groups))
    target = target_accuracy(study)
    total = space.trials if n_trials is None else n_trials
    enqueue_anchors(study, space, groups)

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        config = trial_config(trial, space, names, base_config)
        _skip_repeat(trial)
        trial.set_user_attr("schedule", config.schedule.model_dump(mode="json", exclude_none=True))
        accuracy, density = objective_fn(trial, config)
        accuracy = _record_outcome(trial, target, accuracy, density)
        return density if len(study.directions) == 1 else (accuracy, density)

    if _evaluated(study) < min(total, size):
        study.optimize(
            objective,
            timeout=space.timeout_s if timeout is None else timeout,
            callbacks=[_StopAfter(total, size)],
        )
    return best_feasible_trial(study)


def _skip_repeat(trial: optuna.Trial) -> None:
    """Raise TrialPruned where the trial repeats an evaluated or running one (rare: see
    :class:`NoRepeatSampler`); the budget does not count it."""
    point = _point(trial.params)
    for other in trial.study.get_trials(deepcopy=False, states=(*_EVALUATED, TrialState.RUNNING)):
        if other.number != trial.number and _point(other.params) == point:
            trial.set_user_attr("repeats", other.number)
            raise optuna.TrialPruned(f"repeats trial {other.number}")


def _size(choices: dict[str, list[ParamValue]]) -> int:
    return math.prod(len(values) for values in choices.values())


def _evaluated(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_EVALUATED))


@dataclass(frozen=True)
class _StopAfter:
    """Stop once ``total`` trials were evaluated in the whole study (all processes that share
    it), or every point of the space was."""

    total: int
    size: int

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if _evaluated(study) >= min(self.total, self.size):
            study.stop()


def _record_outcome(trial: optuna.Trial, target: float, accuracy: float, density: float) -> float:
    """Store a trial's accuracy, density and constraint; returns the accuracy used. A NaN
    accuracy (a diverged run) counts as 0: infeasible, and never the best."""
    if not math.isfinite(density) or density <= 0:
        raise ValueError(f"trial {trial.number}: density must be a positive number, got {density}")
    accuracy = accuracy if math.isfinite(accuracy) else 0.0
    trial.set_user_attr("accuracy", accuracy)
    trial.set_user_attr("density", density)
    trial.set_constraint(CONSTRAINT, target - accuracy)
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
    for trial in sorted(study.get_trials(deepcopy=False, states=_FINISHED), key=lambda t: t.number):
        if is_feasible(trial):
            density = float(trial.user_attrs["density"])
            best = density if best is None else max(best, density)
        history.append((trial.number, best))
    return history
