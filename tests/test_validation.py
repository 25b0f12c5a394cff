"""The validation split: held out of the training set, seeded and class-balanced; what `best`,
the search objective and the pruner choose on, test accuracy only reported beside it."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from fake_runs import run as fake_run

from hbfp_dse.errors import UserError
from hbfp_dse.experiments.report import (
    best_for_target,
    decision_warnings,
    search_history,
    summarize,
)
from hbfp_dse.experiments.search.pruning import TargetPruner
from hbfp_dse.experiments.search.section import PruneRule
from hbfp_dse.experiments.store import RunRecord
from hbfp_dse.experiments.sweepfile import kept_without_validation, parse_sweep
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.data import DATASET_INFO, DatasetPair, ImageSplit, held_out
from hbfp_dse.training.folders import FolderDataset, FolderSplit
from hbfp_dse.training.results import EpochRecord
from hbfp_dse.training.trainer import load_config_data, train


def labelled(n: int, classes: int = 10) -> ImageSplit:
    """n images whose first pixel is their index, labels cycling through the classes."""
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    return ImageSplit(images, torch.arange(n) % classes)


def index_of(split: ImageSplit) -> set[int]:
    return set((split.images[:, 0, 0, 0].long() + 256 * split.images[:, 0, 0, 1].long()).tolist())


@pytest.mark.parametrize(("n", "share", "count"), [(1000, 0.1, 100), (7, 0.1, 1), (3, 0.9, 2)])
def test_held_out_takes_the_share_rounded_down_at_least_one_and_leaves_one(
    n: int, share: float, count: int
) -> None:
    kept, held = held_out(torch.arange(n) % 2, share, seed=0)
    assert len(held) == count
    assert sorted(kept.tolist() + held.tolist()) == list(range(n))


def test_held_out_is_class_balanced_and_seeded() -> None:
    labels = torch.arange(1000) % 10
    _, held = held_out(labels, 0.1, seed=3)
    assert torch.bincount(labels[held], minlength=10).tolist() == [10] * 10
    assert torch.equal(held_out(labels, 0.1, seed=3)[1], held)
    assert not torch.equal(held_out(labels, 0.1, seed=4)[1], held)


def test_a_pair_holds_its_validation_images_out_of_training() -> None:
    pair = DatasetPair(DATASET_INFO["mnist"], labelled(500), labelled(50))
    split = pair.with_validation(0.2, seed=0)
    assert split.validation is not None
    train, validation = index_of(split.train), index_of(split.validation)
    assert (len(train), len(validation)) == (400, 100)
    assert train.isdisjoint(validation)
    assert train | validation == set(range(500))
    assert split.test is pair.test
    assert pair.with_validation(0.0, seed=0) is pair
    assert pair.validation_batches(64) is None
    assert sum(len(y) for _, y in split.validation_batches(64)) == 100


def test_image_folders_hold_validation_samples_out_of_train() -> None:
    folder = SimpleNamespace(targets=[i % 4 for i in range(200)])
    train = FolderSplit(folder, list(range(0, 200, 2)))  # type: ignore[arg-type]
    data = FolderDataset(DATASET_INFO["mnist"], train, train, workers=0)
    split = data.with_validation(0.25, seed=1)
    assert split.validation is not None
    kept, held = set(split.train.indices), set(split.validation.indices)
    assert (len(kept), len(held)) == (75, 25)
    assert kept.isdisjoint(held)
    assert kept | held == set(train.indices)


def test_text_validates_on_the_corpus_stretch_between_train_and_test() -> None:
    config = TrainConfig(model="gpt", dataset="pydoc-topics", train_size=64, test_size=16)
    without = load_config_data(config)
    with_split = load_config_data(config.model_copy(update={"validation": 0.1}))
    assert without.validation is None
    assert with_split.validation is not None
    assert torch.equal(with_split.train.windows, without.train.windows)  # type: ignore[union-attr]
    # Any share selects that stretch, so every share is one configuration, one identity.
    assert TrainConfig(**{**config.model_dump(), "validation": 0.3}).validation == 0.1


def test_data_given_to_train_must_hold_the_split_its_configuration_asks_for() -> None:
    config = TrainConfig(
        model="mlp", dataset="mnist-5k", epochs=1, train_size=100, test_size=50, device="cpu"
    )
    held = load_config_data(config.model_copy(update={"validation": 0.2}))
    with pytest.raises(
        UserError, match="holds a validation split but the configuration's validation is 0:"
    ):
        train(config, data=held)
    with pytest.raises(
        UserError, match=r"holds no validation split but the configuration's validation is 0\.2"
    ):
        train(config.model_copy(update={"validation": 0.2}), data=load_config_data(config))


def test_a_run_records_validation_accuracy_each_epoch_only_with_a_split() -> None:
    base = {"model": "mlp", "dataset": "mnist-5k", "epochs": 2, "train_size": 300}
    held = train(TrainConfig(**base, test_size=100, validation=0.2, device="cpu"))
    assert all(e.val_acc is not None and 0 <= e.val_acc <= 1 for e in held.epochs)
    assert held.final_val_acc == held.epochs[-1].val_acc
    plain = train(TrainConfig(**base, test_size=100, device="cpu"))
    assert all(e.val_acc is None and e.val_loss is None for e in plain.epochs)
    assert plain.final_val_acc is None


def stored_run(run_id: int, label: str, density: float, test: float, val: float | None) -> Any:
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(RunRecord)}
    values |= {
        "id": run_id,
        "sweep_id": 1,
        "sweep": "s",
        "run_hash": label,
        "config_id": label,
        "label": label,
        "kind": "grid",
        "config": {"dataset": "mnist-5k", "schedule": {}},
        "seed": 0,
        "status": "done",
        "attempts": 1,
        "faults": 0,
        "created_at": datetime(2026, 1, 1),
        "final_acc": test,
        "best_acc": test,
        "final_val_acc": val,
        "density": density,
        "epochs": (),
    }
    return RunRecord(**values)


def test_best_chooses_on_validation_and_never_on_test() -> None:
    # The denser one reaches the target on test accuracy only: it must not be chosen.
    runs = [stored_run(1, "wide", 10.0, 0.90, 0.96), stored_run(2, "narrow", 20.0, 0.97, 0.90)]
    winner, _ = best_for_target(summarize(runs), 0.95)
    assert winner is not None
    assert winner.label == "wide"
    assert (winner.selected_on, winner.selection_accuracy, winner.accuracy) == (
        "validation",
        0.96,
        0.90,
    )
    assert not any("test accuracy" in w for w in decision_warnings(summarize(runs), winner, 0.95))


def test_runs_without_a_split_are_chosen_on_test_with_a_warning() -> None:
    runs = [stored_run(1, "old", 10.0, 0.96, None)]
    summaries = summarize(runs)
    winner, _ = best_for_target(summaries, 0.95)
    assert winner is not None
    assert winner.selected_on == "test"
    assert any("chosen on test accuracy" in w for w in decision_warnings(summaries, winner, 0.95))


def epoch(test_acc: float, val_acc: float | None) -> EpochRecord:
    return EpochRecord(0, 1.0, 0.5, 1.0, test_acc, 0.1, 1.0, 10.0, {}, val_acc=val_acc)


def test_the_pruner_reports_and_stops_on_validation_accuracy() -> None:
    reported: list[tuple[float, int]] = []
    trial = SimpleNamespace(
        study=SimpleNamespace(directions=[None]),
        report=lambda value, step: reported.append((value, step)),
        set_user_attr=lambda *_: None,
    )
    rule = PruneRule(grace_epochs=1, margin=0.0, margin_per_epoch=0.0)
    pruner = TargetPruner(trial, 0.9, 3, rule)  # type: ignore[arg-type]
    assert pruner.on_epoch_end(epoch(test_acc=0.99, val_acc=0.5))  # hopeless on validation
    assert reported == [(0.5, 0)]
    assert not pruner.on_epoch_end(epoch(test_acc=0.5, val_acc=0.95))


def test_a_sweep_stored_before_validation_splits_keeps_none_unless_its_file_sets_one() -> None:
    text = "name: s\nbaselines: [fp32]\n"
    spec = parse_sweep(text)
    legacy = [{"model": "cnn"}]  # stored configurations without the field
    kept = kept_without_validation(spec, text, legacy)
    assert kept is not None
    assert kept.base.validation == 0.0
    assert kept_without_validation(spec, text, []) is None  # a new sweep
    assert kept_without_validation(spec, text, [{"validation": 0.1}]) is None
    given = "name: s\nbase: {validation: 0.1}\nbaselines: [fp32]\n"
    assert kept_without_validation(parse_sweep(given), given, legacy) is None
    # Runs stored since the field exists write it out as 0.0: a legacy sweep resumed once
    # (or searched once) still resumes without a split.
    resumed = [*legacy, {"model": "cnn", "validation": 0.0}]
    again = kept_without_validation(spec, text, resumed)
    assert again is not None
    assert again.base.validation == 0.0


def test_the_report_search_history_counts_trials_feasible_on_validation() -> None:
    trials = [
        dataclasses.replace(
            fake_run(i, f"t{i}", acc, density, kind="search"),
            trial_number=i,
            search_target=0.95,
            final_val_acc=val,
            status=status,
        )
        for i, (acc, val, density, status) in enumerate(
            [
                (0.96, 0.94, 20.0, "done"),  # feasible on test only: not counted
                (0.955, 0.951, 12.0, "done"),
                (0.97, 0.96, 30.0, "pruned"),  # a pruned trial never counts
                (0.96, 0.955, 15.0, "done"),
            ]
        )
    ]
    assert search_history(trials) == [(0, None), (1, 12.0), (2, 12.0), (3, 15.0)]
