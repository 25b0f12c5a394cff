"""The search logic on a cheap synthetic objective: accuracy is a fixed function of the
resolved schedule's mantissa widths, density is the real cost model on the small CNN."""

from __future__ import annotations

import itertools
import math
from typing import Any

import optuna
import pytest

from hbfp_dse.configfile import validate
from hbfp_dse.cost.density import run_cost
from hbfp_dse.cost.macs import count_macs
from hbfp_dse.emulation import convert, layer_infos
from hbfp_dse.errors import UserError
from hbfp_dse.experiments.search.points import (
    anchor_params,
    config_from_params,
    layer_groups,
    param_choices,
)
from hbfp_dse.experiments.search.pruning import TargetPruner, make_pruner
from hbfp_dse.experiments.search.section import PruneRule, SearchSpace
from hbfp_dse.experiments.search.study import (
    CONSTRAINT,
    best_feasible_trial,
    create_study,
    is_feasible,
    run_search,
    search_history,
)
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.models import build_model
from hbfp_dse.training.results import EpochRecord
from hbfp_dse.training.trainer import train

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = TrainConfig(epochs=4)  # the small CNN on mnist-5k: features.0, features.4, fc
TARGET = 0.95
_MODEL = convert(build_model("cnn", 10, 1, 28))
LAYERS = layer_infos(_MODEL)
MACS = count_macs(_MODEL, (1, 28, 28))
WEIGHTS = {"features.0": 0.5, "features.4": 0.2, "fc": 0.5}  # first and last layers matter most

SPACE = SearchSpace.model_validate(
    {
        "first": {"mantissa_bits": [4, 6, 8]},
        "last": {"mantissa_bits": [4, 6, 8]},
        "middle": {"mantissa_bits": [2, 3, 4, 6, 8], "block_size": [64, 256]},
        "boost_last_epochs": [0, 1],
        "seed": 0,  # reaches the grid's best after 41 evaluations (benchmarks/search.py)
    }
)


def model_layer_names(config: TrainConfig) -> list[str]:
    return [layer.name for layer in model_for(config).layers]


def _loss(fmt: Any) -> float:
    # Halves with every mantissa bit; larger blocks lose a little more.
    return 0.2 * 2.0 ** (2 - fmt.mantissa_bits) * (1 + 0.1 * math.log2(fmt.block_size / 64))


def epoch_accuracies(config: TrainConfig) -> list[float]:
    """Accuracy after each epoch: rises by 1.5 points an epoch to a final value that loses,
    per layer, the loss of its early-epoch format and, less, that of its final-epoch one."""
    table = config.schedule.build().resolve(LAYERS, config.epochs)
    penalty = sum(
        w * (0.6 * _loss(table[0][name]) + 0.4 * _loss(table[-1][name]))
        for name, w in WEIGHTS.items()
    )
    final = 0.975 - penalty
    return [final - 0.015 * (config.epochs - 1 - e) for e in range(config.epochs)]


def density(config: TrainConfig) -> float:
    return run_cost(MACS, config.schedule.build().resolve(LAYERS, config.epochs)).density_vs_fp32


def synthetic(trial: optuna.Trial, config: TrainConfig) -> tuple[float, float]:
    return epoch_accuracies(config)[-1], density(config)


def grid_best(space: SearchSpace) -> tuple[float, int]:
    """The best feasible density of the exhaustive grid, and the grid's size."""
    groups = layer_groups(space, [layer.name for layer in LAYERS])
    choices = param_choices(space, groups)
    best, size = 0.0, 0
    for values in itertools.product(*choices.values()):
        config = config_from_params(dict(zip(choices, values, strict=True)), space, groups, BASE)
        size += 1
        if epoch_accuracies(config)[-1] >= TARGET:
            best = max(best, density(config))
    return best, size


def test_search_beats_the_exhaustive_grid_in_fewer_trials() -> None:
    best, size = grid_best(SPACE)
    study = create_study(None, "beat-grid", SPACE, TARGET)
    budget = size // 3
    winner = run_search(study, SPACE, BASE, synthetic, n_trials=budget)
    assert winner is not None
    assert winner.user_attrs["density"] >= best - 1e-9
    evaluated = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(evaluated) == budget < size


def test_a_space_smaller_than_the_budget_is_evaluated_once_per_point() -> None:
    space = SearchSpace.model_validate(
        {
            "first": {"mantissa_bits": [6, 8]},
            "last": {"mantissa_bits": [6, 8]},
            "middle": {"mantissa_bits": [4, 6], "block_size": [64, 256]},
            "boost_last_epochs": [0, 1],
        }
    )
    study = create_study(None, "small", space, TARGET)
    with pytest.warns(UserWarning, match="'hbfp8' skipped"):
        run_search(study, space, BASE, synthetic, n_trials=100)
    evaluated = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = {tuple(t.params.values()) for t in evaluated}
    assert len(points) == len(evaluated) == 2**5  # five parameters of two choices
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert study.trials[trial.user_attrs["repeats"]].params == trial.params


def test_anchors_are_tried_first() -> None:
    study = create_study(None, "anchors", SPACE, TARGET)
    run_search(study, SPACE, BASE, synthetic, n_trials=4)
    anchors = [t.user_attrs.get("anchor") for t in study.trials]
    assert anchors == ["hbfp8", "hbfp6", "booster", None]
    booster = study.trials[2]
    assert booster.params["mantissa_bits[first]"] == 6
    assert booster.params["mantissa_bits[features.*]"] == 4
    assert booster.params["boost_last_epochs"] == 1
    assert booster.params["block_size[features.*]"] == 64
    assert all(is_feasible(t) for t in study.trials[:2])  # uniform hbfp8 and hbfp6 hold accuracy


def test_anchor_outside_the_space_is_skipped_with_a_warning() -> None:
    space = SearchSpace.model_validate(
        {
            "middle": {"mantissa_bits": [3, 4]},
            "boost_last_epochs": [2],
            "first": {"block_size": [32, 256]},
        }
    )
    groups = layer_groups(space, [layer.name for layer in LAYERS])
    with pytest.warns(UserWarning, match="skipped") as caught:
        anchors = anchor_params(space, groups)
    assert [str(w.message) for w in caught] == [
        "search anchor 'hbfp8' skipped: no mantissa width 8 for features.* in the space",
        "search anchor 'hbfp6' skipped: no mantissa width 6 for features.* in the space",
    ]
    assert list(anchors) == ["booster"]
    assert anchors["booster"]["boost_last_epochs"] == 2  # the nearest choice
    assert anchors["booster"]["block_size[first]"] == 32  # nearest 64 in log2, ties to the first


def test_resumed_study_continues_the_trial_count(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    run_search(create_study(url, "resume", SPACE, TARGET), SPACE, BASE, synthetic, n_trials=5)
    study = create_study(url, "resume", SPACE, TARGET)
    assert len(study.trials) == 5
    run_search(study, SPACE, BASE, synthetic, n_trials=8)
    assert [t.number for t in study.trials] == list(range(8))
    assert sum("anchor" in t.user_attrs for t in study.trials) == 3  # anchors not queued again


def test_resuming_with_another_target_or_space_is_refused(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    create_study(url, "s", SPACE, TARGET)
    with pytest.raises(UserError, match=r"accuracy >= 0\.95, not 0\.9"):
        create_study(url, "s", SPACE, 0.9)
    other = SPACE.model_copy(update={"boost_last_epochs": [0, 1, 2]})
    with pytest.raises(UserError, match=r"other search choices \(boost_last_epochs\)"):
        create_study(url, "s", other, TARGET)
    bigger_budget = SPACE.model_copy(update={"trials": 99, "seed": 7})
    create_study(url, "s", bigger_budget, TARGET)
    with pytest.raises(UserError, match=r"validation share of 0\.0, not 0\.1"):
        create_study(url, "s", SPACE, TARGET, validation=0.1)  # trials were judged on test


def test_constraint_is_target_minus_accuracy() -> None:
    study = create_study(None, "constraints", SPACE, TARGET)
    run_search(study, SPACE, BASE, synthetic, n_trials=12)
    for trial in study.trials:
        assert trial.constraints == {
            CONSTRAINT: pytest.approx(TARGET - trial.user_attrs["accuracy"])
        }
        assert trial.value == trial.user_attrs["density"]
    assert any(not is_feasible(t) for t in study.trials)
    best = best_feasible_trial(study)
    assert best is not None
    assert best.user_attrs["accuracy"] >= TARGET
    history = [d for _, d in search_history(study)]
    assert history[-1] == best.user_attrs["density"]
    assert all(a is None or (b is not None and a <= b) for a, b in itertools.pairwise(history))


def test_nsga2_searches_the_accuracy_density_front() -> None:
    space = SPACE.model_copy(update={"sampler": "nsga2", "population_size": 4})
    study = create_study(None, "front", space, TARGET)
    run_search(study, space, BASE, synthetic, n_trials=10)
    assert len(study.directions) == 2
    for trial in study.trials:
        assert trial.values == [trial.user_attrs["accuracy"], trial.user_attrs["density"]]
    assert all(is_feasible(t) for t in study.best_trials)


def _record(epoch: int, acc: float) -> EpochRecord:
    return EpochRecord(epoch, 1.0, acc, 1.0, acc, 0.1, 1.0, 1.0, {})


@pytest.mark.parametrize(
    ("accuracies", "stopped"),
    [
        ([0.30, 0.32, 0.33, 0.34, 0.35], 0),  # hopeless from the first epoch on
        ([0.86, 0.88, 0.885, 0.90, 0.91], 2),  # too slow: 0.885 + 0.05 + 2 * 0.02 < 0.98
        ([0.86, 0.90, 0.95, 0.97, 0.98], None),  # reaches the target
        ([0.86, 0.88, 0.90, 0.92, 0.93], None),  # the last epoch is never stopped
    ],
)
def test_pruner_stops_hopeless_trials_only(accuracies: list[float], stopped: int | None) -> None:
    study = create_study(None, "prune", SPACE, 0.98)
    trial = study.ask()
    pruner = TargetPruner(trial, 0.98, len(accuracies), PruneRule(grace_epochs=1))
    epochs_run = 0
    for epoch, acc in enumerate(accuracies):  # as the trainer does: stop at the first True
        epochs_run += 1
        if pruner.on_epoch_end(_record(epoch, acc)):
            break
    assert trial.user_attrs.get("stopped_at_epoch") == stopped
    assert epochs_run == (len(accuracies) if stopped is None else stopped + 1)
    reported = study.trials[trial.number].intermediate_values
    assert reported == dict(enumerate(accuracies[:epochs_run]))


def test_pruner_waits_for_the_grace_epochs() -> None:
    rule = PruneRule(grace_epochs=2, margin=0.0, margin_per_epoch=0.0)
    assert not rule.hopeless(0.1, done=1, epochs=5, target=0.9)
    assert rule.hopeless(0.1, done=2, epochs=5, target=0.9)


def test_stopped_trial_is_recorded_infeasible_with_the_accuracy_it_reached() -> None:
    # The synthetic runs gain 1.5 points an epoch, so this rule stops those that end below the
    # target, after their first epoch.
    rule = PruneRule(grace_epochs=1, margin=0.0, margin_per_epoch=0.015)
    space = SPACE.model_copy(update={"prune": rule})
    study = create_study(None, "pruned-search", space, TARGET)

    def objective(trial: optuna.Trial, config: TrainConfig) -> tuple[float, float]:
        pruner = make_pruner(trial, space, config)
        assert pruner is not None
        reached = 0.0
        for epoch, acc in enumerate(epoch_accuracies(config)):
            reached = acc
            if pruner.on_epoch_end(_record(epoch, acc)):
                break
        return reached, density(config)

    run_search(study, space, BASE, objective, n_trials=15)
    stopped = [t for t in study.trials if "stopped_at_epoch" in t.user_attrs]
    assert stopped
    for trial in stopped:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert not is_feasible(trial)
        assert trial.constraints[CONSTRAINT] > 0
        assert (
            trial.user_attrs["accuracy"]
            == trial.intermediate_values[trial.user_attrs["stopped_at_epoch"]]
        )
    assert not any("stopped_at_epoch" in t.user_attrs for t in study.trials if is_feasible(t))


def test_pruner_stops_a_real_training_run() -> None:
    config = TrainConfig(epochs=3, train_size=128, test_size=128)
    study = create_study(None, "train", SPACE, 0.99)
    trial = study.ask()
    pruner = TargetPruner(
        trial, 0.99, config.epochs, PruneRule(grace_epochs=1, margin=0.0, margin_per_epoch=0.0)
    )
    result = train(config, callbacks=[pruner])
    assert result.status == "stopped"
    assert len(result.epochs) == 1
    assert trial.user_attrs["stopped_at_epoch"] == 0


def test_middle_groups_default_to_module_prefixes() -> None:
    names = model_layer_names(TrainConfig(model="resnet20", dataset="cifar10"))
    labels = [g.label for g in layer_groups(SearchSpace(), names)]
    assert labels == ["layer1.*", "layer2.*", "layer3.*", "first", "last"]
    assert [g.label for g in layer_groups(SearchSpace(), ["a", "b", "c"])] == ["b", "first", "last"]
    assert [g.label for g in layer_groups(SearchSpace(), ["only"])] == ["first", "last"]


def test_middle_globs_must_match_and_cover_the_middle_layers() -> None:
    names = model_layer_names(TrainConfig(model="resnet20", dataset="cifar10"))
    space = SearchSpace.model_validate({"middle": {"groups": ["layer1.*", "layer[23].*"]}})
    assert [g.label for g in layer_groups(space, names)][:2] == ["layer1.*", "layer[23].*"]
    gap = SearchSpace.model_validate({"middle": {"groups": ["layer1.*"]}})
    with pytest.raises(UserError, match=r"leave layers without a group: layer2\.0\.conv1"):
        layer_groups(gap, names)
    typo = SearchSpace.model_validate({"middle": {"groups": ["*", "layer9.*"]}})
    with pytest.raises(UserError, match=r"'layer9\.\*' matches none of the middle layers"):
        layer_groups(typo, names)


def test_boost_raises_narrow_groups_and_never_lowers_wide_ones() -> None:
    groups = layer_groups(SPACE, [layer.name for layer in LAYERS])
    params = {name: values[0] for name, values in param_choices(SPACE, groups).items()}
    params |= {"mantissa_bits[first]": 8, "mantissa_bits[features.*]": 2, "boost_last_epochs": 1}
    config = config_from_params(params, SPACE, groups, BASE)
    table = config.schedule.build().resolve(LAYERS, config.epochs)
    assert [table[e]["features.0"].name for e in range(4)] == ["hbfp8"] * 4
    assert [table[e]["features.4"].name for e in range(4)] == ["hbfp2"] * 3 + ["hbfp6"]
    assert [table[e]["fc"].name for e in range(4)] == ["hbfp4"] * 3 + ["hbfp6"]


def test_scaling_and_rounding_choices_reach_the_config() -> None:
    space = SearchSpace.model_validate(
        {
            "scaling": [{"levels": 1}, {"levels": 2, "sub_block": 16}],
            "rounding": ["nearest", {"forward": "nearest", "backward": "stochastic"}],
        }
    )
    groups = layer_groups(space, [layer.name for layer in LAYERS])
    choices = param_choices(space, groups)
    assert choices["sub_block"] == [None, 16]
    assert choices["rounding"] == ["nearest", "nearest/stochastic"]
    params = {name: values[-1] for name, values in choices.items()}
    config = config_from_params(params, space, groups, BASE)
    assert config.schedule.rules is not None
    assert config.schedule.rules[0].format == "hbfp8_s16"
    assert (config.forward_rounding, config.backward_rounding) == ("nearest", "stochastic")
    assert anchor_params(space, groups)["hbfp6"]["sub_block"] is None


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            {"first": {"mantissa_bits": [1, 4]}},
            r"first\.mantissa_bits: .*must be in 2\.\.16, got \[1\]",
        ),
        ({"middle": {"block_size": [0]}}, r"middle\.block_size: .*block size 0"),
        ({"last": {"mantissa_bits": []}}, r"last\.mantissa_bits: .*at least 1 item"),
        ({"boost_last_epochs": [-1]}, r"boost_last_epochs: .*must be >= 0"),
        ({"boost_format": "hbfp99"}, r"out of range"),
        ({"sampler": "random"}, r"sampler: .*'tpe' or 'nsga2'"),
        ({"scaling": [{"levels": 2}]}, r"give 'sub_block' exactly when 'levels' is 2"),
        (
            {"scaling": [{"levels": 2, "sub_block": 48}]},
            r"sub_block 48 must be smaller than and divide",
        ),
        ({"middle": {"groups": ["first"]}}, r"middle groups are layer-name globs"),
        ({"rounding": ["nearest", "nearest"]}, r"rounding choices must be distinct"),
        ({"trials": 0}, r"trials: .*greater than or equal to 1"),
        ({"prune": {"margin": -0.1}}, r"prune\.margin: "),
        ({"budget": 3}, r"budget: unknown key"),
    ],
)
def test_space_errors_name_the_key_and_the_problem(search: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate(SearchSpace, search, "sweep.yaml")


def test_out_of_range_target_and_boost_are_refused() -> None:
    with pytest.raises(UserError, match=r"fraction in \(0, 1\]"):
        create_study(None, "t", SPACE, 95.0)
    space = SPACE.model_copy(update={"boost_last_epochs": [0, 3]})
    study = create_study(None, "b", space, TARGET)
    with pytest.raises(UserError, match="3 is more than the 2 epochs of base"):
        run_search(study, space, TrainConfig(epochs=2), synthetic, n_trials=1)
