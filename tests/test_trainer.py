"""The trainer: epoch records, callbacks, divergence, checkpoints, seeds, optimizers."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from hbfp_dse.emulation import Schedule
from hbfp_dse.errors import UserError
from hbfp_dse.formats import quantize
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.checkpoint import CheckpointWarning
from hbfp_dse.training.config import LRScheduleConfig, OptimizerConfig, TrainConfig
from hbfp_dse.training.data import DatasetPair, load_dataset
from hbfp_dse.training.models import build_model
from hbfp_dse.training.optim import build_lr_scheduler, build_optimizer, lr_factor
from hbfp_dse.training.results import EpochRecord, RunResult
from hbfp_dse.training.trainer import train

trainer_module = importlib.import_module("hbfp_dse.training.trainer")

TIMING = {"seconds", "images_per_s"}


pytestmark = pytest.mark.usefixtures("eager_quantizer")


@pytest.fixture(scope="module")
def data() -> DatasetPair:
    return load_dataset("mnist-5k", train_size=96, test_size=64)


def config(**changes: Any) -> TrainConfig:
    """A few-second run: the MLP on 96 mnist-5k digits, batches of 32, two epochs."""
    base: dict[str, Any] = {
        "model": "mlp",
        "train_size": 96,
        "test_size": 64,
        "epochs": 2,
        "batch_size": 32,
        "device": "cpu",
    }
    return TrainConfig.model_validate(base | changes)


def untimed(record: EpochRecord) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(record).items() if k not in TIMING}


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.starts: list[tuple[int, int, int]] = []
        self.steps: list[tuple[int, int, float, float]] = []
        self.records: list[EpochRecord] = []

    def on_start(
        self, total_epochs: int, steps_per_epoch: int, history: Sequence[EpochRecord]
    ) -> None:
        self.starts.append((total_epochs, steps_per_epoch, len(history)))

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        self.steps.append((epoch, step, loss, accuracy))

    def on_epoch_end(self, record: EpochRecord) -> bool:
        self.records.append(record)
        return record.epoch == self.stop_after


# --- records and callbacks -----------------------------------------------------------------


def test_a_run_without_given_data_loads_its_dataset_and_records_every_epoch() -> None:
    recorder = Recorder()
    result = train(config(schedule={"booster": {}}), callbacks=[recorder])
    assert isinstance(result, RunResult)
    assert result.status == "done"
    assert result.message is None
    assert result.device == "cpu"
    assert [r.epoch for r in result.epochs] == [0, 1]
    for record in result.epochs:
        assert 0 <= record.train_acc <= 1
        assert 0 <= record.test_acc <= 1
        assert math.isfinite(record.train_loss)
        assert math.isfinite(record.test_loss)
        assert record.lr > 0
        assert record.seconds > 0
        assert record.images_per_s == pytest.approx(96 / record.seconds)
    assert result.final_test_acc == result.epochs[-1].test_acc
    assert result.best_test_acc == max(r.test_acc for r in result.epochs)
    # The formats used, per layer and epoch, as the booster schedule resolves them.
    names = [layer.name for layer in result.layers]
    assert names == ["layers.1", "layers.3", "layers.5"]
    resolved = Schedule.booster().resolve(result.layers, 2)
    expected = [{k: f.name for k, f in epoch.items()} for epoch in resolved]
    assert result.schedule == expected
    assert [r.formats for r in result.epochs] == expected
    assert expected[0] == {"layers.1": "hbfp6", "layers.3": "hbfp4", "layers.5": "hbfp6"}
    assert recorder.records == result.epochs


def test_callbacks_see_start_steps_and_epochs(data: DatasetPair) -> None:
    recorder = Recorder()
    result = train(config(), callbacks=[recorder, object()], data=data)  # hooks are optional
    assert recorder.starts == [(2, 3, 0)]
    assert [(epoch, step) for epoch, step, _, _ in recorder.steps] == [
        (e, s) for e in range(2) for s in range(3)
    ]
    assert all(math.isfinite(loss) and 0 <= acc <= 1 for _, _, loss, acc in recorder.steps)
    first_epoch_loss = sum(loss for e, _, loss, _ in recorder.steps if e == 0) / 3
    assert result.epochs[0].train_loss == pytest.approx(first_epoch_loss)
    assert recorder.records == result.epochs


def test_a_callback_returning_true_stops_the_run(data: DatasetPair) -> None:
    recorder = Recorder(stop_after=0)
    result = train(config(epochs=3), callbacks=[recorder], data=data)
    assert result.status == "stopped"
    assert "epoch 0" in (result.message or "")
    assert len(result.epochs) == 1


@pytest.mark.parametrize("schedule", ["fp32", "hbfp4"])
def test_a_nan_or_inf_loss_ends_the_run_as_diverged_without_raising(
    data: DatasetPair, schedule: str
) -> None:
    recorder = Recorder()
    result = train(
        config(optimizer={"lr": 1e30}, schedule=schedule), callbacks=[recorder], data=data
    )
    assert result.status == "diverged"
    assert "NaN/Inf" in (result.message or "")
    assert result.epochs == []
    assert recorder.records == []
    assert all(math.isfinite(loss) for _, _, loss, _ in recorder.steps)


def test_losses_read_every_few_steps_give_the_same_epochs(data: DatasetPair) -> None:
    # What a GPU run does by default: the sums stay on the device between reads.
    every, windowed = Recorder(), Recorder()
    straight = train(config(epochs=1, batch_size=8), callbacks=[every], data=data)
    sparse = train(config(epochs=1, batch_size=8), callbacks=[windowed], data=data, sync_every=5)
    assert [step for _, step, _, _ in windowed.steps] == [4, 9, 11]  # 12 steps, and the last
    (a,), (b,) = straight.epochs, sparse.epochs
    assert (a.train_acc, a.test_loss, a.test_acc) == (b.train_acc, b.test_loss, b.test_acc)
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-12)
    first_window = sum(loss for _, step, loss, _ in every.steps if step < 5) / 5
    assert windowed.steps[0][2] == pytest.approx(first_window, rel=1e-12)


@pytest.mark.parametrize("sync_every", [1, 4])
def test_divergence_stops_the_run_within_the_steps_between_reads(
    data: DatasetPair, sync_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    cross_entropy = trainer_module.F.cross_entropy

    def nan_from_the_sixth_step(logits: torch.Tensor, labels: torch.Tensor, **kw: Any) -> Any:
        calls.append(1)
        loss = cross_entropy(logits, labels, **kw)
        return loss * float("nan") if len(calls) >= 6 else loss

    monkeypatch.setattr(trainer_module.F, "cross_entropy", nan_from_the_sixth_step)
    result = train(config(epochs=1, batch_size=8), data=data, sync_every=sync_every)
    assert result.status == "diverged"
    assert 6 <= len(calls) < 6 + sync_every  # steps 0..5 are 6 calls; read at most k-1 later


class DeterminismSeen:
    def on_start(self, *args: Any) -> None:
        self.inside = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )


def test_a_deterministic_run_refuses_nondeterministic_algorithms(
    data: DatasetPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = DeterminismSeen()
    train(config(epochs=1, deterministic=True), callbacks=[seen], data=data)
    assert seen.inside == (True, False)  # an op without a deterministic version raises
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled()  # as it was before


# --- checkpoints, seeds, devices -----------------------------------------------------------


class StopAfterFirstEpoch:
    def on_epoch_end(self, record: EpochRecord) -> bool:
        return True


def test_resuming_from_a_checkpoint_equals_training_straight_through(
    tmp_path: Path, data: DatasetPair
) -> None:
    # Stochastic rounding and a mid-run LR schedule: the RNG and scheduler states must carry.
    cfg = config(
        schedule={"booster": {}}, forward_rounding="stochastic", backward_rounding="stochastic"
    )
    cfg = cfg.model_copy(update={"deterministic": True})
    straight = train(cfg, checkpoint=tmp_path / "straight.pt", data=data)
    first = train(
        cfg, checkpoint=tmp_path / "split.pt", callbacks=[StopAfterFirstEpoch()], data=data
    )
    assert first.status == "stopped"
    recorder = Recorder()
    resumed = train(cfg, checkpoint=tmp_path / "split.pt", callbacks=[recorder], data=data)
    assert recorder.starts == [(2, 3, 1)]
    assert [step[0] for step in recorder.steps] == [1, 1, 1]
    assert resumed.status == straight.status == "done"
    assert [untimed(r) for r in resumed.epochs] == [untimed(r) for r in straight.epochs]
    a = torch.load(tmp_path / "straight.pt", weights_only=True)
    b = torch.load(tmp_path / "split.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6


def test_a_checkpoint_in_the_original_layout_resumes(tmp_path: Path, data: DatasetPair) -> None:
    # Runs resume across upgrades: this is the layout every checkpoint so far was written in.
    cfg = config(schedule="hbfp6", forward_rounding="stochastic", deterministic=True)
    straight = train(cfg, data=data)
    written = tmp_path / "written.pt"
    train(cfg, checkpoint=written, callbacks=[StopAfterFirstEpoch()], data=data)
    # Nothing draws from the global RNGs after the epoch's checkpoint: they are its states.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    saved = torch.load(written, weights_only=True)
    original = {
        "model": saved["model"],
        "optimizer": saved["optimizer"],
        "scheduler": saved["scheduler"],
        "history": saved["history"],
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": [],
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "python": [version, list(internal), python_gauss],
            "quant": saved["rng"]["quant"],
        },
    }
    assert saved.keys() == original.keys()
    assert saved["rng"].keys() == original["rng"].keys()
    assert saved["rng"]["numpy"].keys() == original["rng"]["numpy"].keys()
    assert torch.equal(saved["rng"]["torch"], original["rng"]["torch"])
    assert torch.equal(saved["rng"]["numpy"]["keys"], original["rng"]["numpy"]["keys"])
    assert saved["rng"]["python"] == original["rng"]["python"]
    assert [untimed(EpochRecord(**r)) for r in saved["history"]] == [untimed(straight.epochs[0])]
    path = tmp_path / "original.pt"
    torch.save(original, path)
    recorder = Recorder()
    resumed = train(cfg, checkpoint=path, callbacks=[recorder], data=data)
    assert recorder.starts == [(2, 3, 1)]
    assert [untimed(r) for r in resumed.epochs] == [untimed(r) for r in straight.epochs]


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_a_checkpoint_from_before_counter_based_noise_resumes(
    tmp_path: Path, data: DatasetPair, rounding: str
) -> None:
    # Such checkpoints hold a torch.Generator's state as "quant": a stochastic run resumes
    # with a fresh noise stream and says so; a run that never drew from it says nothing.
    cfg = config(schedule="hbfp6", forward_rounding=rounding)
    path = tmp_path / "run.pt"
    train(cfg, checkpoint=path, callbacks=[StopAfterFirstEpoch()], data=data)
    saved = torch.load(path, weights_only=True)
    saved["rng"]["quant"] = torch.Generator().manual_seed(1).get_state()
    torch.save(saved, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(cfg, checkpoint=path, data=data)
    assert resumed.status == "done"
    assert [r.epoch for r in resumed.epochs] == [0, 1]
    said = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    if rounding == "stochastic":
        assert said == [
            "this checkpoint's stochastic-rounding noise came from a torch.Generator; the "
            "resumed run continues with the counter-based stream from its start"
        ]
    else:
        assert said == []


def test_checkpoint_loads_with_weights_only(tmp_path: Path, data: DatasetPair) -> None:
    path = tmp_path / "run" / "ckpt.pt"
    train(config(epochs=1), checkpoint=path, data=data)
    state = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scheduler", "history", "rng"} <= state.keys()
    assert state["history"][0]["epoch"] == 0
    assert not path.with_name("ckpt.pt.tmp").exists()


def test_a_finished_checkpoint_is_not_trained_again(tmp_path: Path, data: DatasetPair) -> None:
    path = tmp_path / "ckpt.pt"
    first = train(config(epochs=1), checkpoint=path, data=data)
    recorder = Recorder()
    again = train(config(epochs=1), checkpoint=path, callbacks=[recorder], data=data)
    assert recorder.steps == []
    assert [untimed(r) for r in again.epochs] == [untimed(r) for r in first.epochs]


def test_seeds_reproduce_and_differ(data: DatasetPair) -> None:
    cfg = config(epochs=1, schedule="hbfp6", forward_rounding="stochastic")
    runs = [train(cfg.model_copy(update={"seed": s}), data=data) for s in (3, 3, 4)]
    records = [[untimed(r) for r in run.epochs] for run in runs]
    assert records[0] == records[1]
    assert records[0] != records[2]


def test_model_for_builds_from_the_dataset_shape_and_lists_the_quantized_layers() -> None:
    built = model_for(config(dataset="cifar10"))
    assert built.info.name == "cifar10"
    assert built.input_shape == (3, 32, 32)
    assert [layer.name for layer in built.layers] == ["layers.1", "layers.3", "layers.5"]
    assert built.model(torch.zeros(2, *built.input_shape)).shape == (2, 10)


def test_an_unknown_dataset_is_a_clear_user_error() -> None:
    with pytest.raises(UserError, match="unknown dataset 'imagenet'; accepted names: mnist-5k"):
        model_for(config(dataset="imagenet"))


def test_data_of_another_dataset_is_a_clear_user_error(data: DatasetPair) -> None:
    with pytest.raises(UserError, match=r"data given is 'mnist-5k'.*trains on 'cifar10'"):
        train(config(dataset="cifar10"), data=data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_asking_for_cuda_without_it_is_a_clear_user_error(device: str) -> None:
    with pytest.raises(UserError, match=f"{device!r}.*CUDA is not available"):
        train(config(device=device))


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0"])
def test_a_malformed_device_is_rejected(device: str) -> None:
    with pytest.raises(ValidationError, match="device must be auto, cpu, cuda or cuda:N"):
        config(device=device)


def test_device_auto_uses_cpu_without_cuda(data: DatasetPair) -> None:
    result = train(config(epochs=1, device="auto"), data=data)
    assert result.device == ("cuda" if torch.cuda.is_available() else "cpu")


# --- optimizers and learning-rate schedules ------------------------------------------------


def test_the_reference_cifar_recipe_is_expressible() -> None:
    recipe = TrainConfig.model_validate(
        {
            "model": "resnet20",
            "dataset": "cifar10",
            "epochs": 160,
            "batch_size": 128,
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
            "lr_schedule": {"name": "step", "warmup_epochs": 5, "milestones": [82, 122]},
            "schedule": {"booster": {"low": "hbfp4", "high": "hbfp6", "last_epochs": 1}},
        }
    )
    assert recipe.optimizer.weight_decay == 1e-4
    factor = lr_factor(recipe.lr_schedule, recipe.epochs)
    assert factor(0) < 0.01
    assert factor(2.5) == pytest.approx(0.5, abs=1e-3)
    assert factor(5) == factor(81.9) == 1.0
    assert factor(82) == pytest.approx(0.1)
    assert factor(122) == pytest.approx(0.01)
    assert recipe.augment is None  # the dataset's default: CIFAR crop + flip


def test_cosine_with_warmup_and_adamw(data: DatasetPair) -> None:
    schedule = LRScheduleConfig(name="cosine", warmup_epochs=1)
    factor = lr_factor(schedule, 4)
    assert factor(0.5) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.5 / 4)), rel=1e-2)
    assert factor(2) == pytest.approx(0.5)
    assert factor(3.999) < 1e-5
    model = build_model("mlp", 10, 1, 28)
    optimizer = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3, betas=(0.8, 0.9)))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.8, 0.9)
    scheduler = build_lr_scheduler(optimizer, schedule, epochs=4, steps_per_epoch=10)
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * factor(2))
    result = train(
        config(
            optimizer={"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
            lr_schedule={"name": "cosine", "warmup_epochs": 0.5},
        ),
        data=data,
    )
    assert result.status == "done"
    run_factor = lr_factor(LRScheduleConfig(name="cosine", warmup_epochs=0.5), 2)
    assert [r.lr for r in result.epochs] == pytest.approx([1e-3 * run_factor(t) for t in (0, 1)])


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_skips_batchnorm_and_biases(name: str) -> None:
    model = build_model("resnet8", 10, 1, 28)
    model.fc.bias.data.fill_(0.5)
    optimizer = build_optimizer(model, OptimizerConfig(name=name, lr=0.1, weight_decay=0.5))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    gemm_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    assert decayed == gemm_weights
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # with zero gradients only weight decay moves a parameter
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) == (id(p) not in decayed), n


def test_onecycle_default_lr_rises_then_falls(data: DatasetPair) -> None:
    result = train(config(epochs=3), data=data)
    lrs = [r.lr for r in result.epochs]
    assert lrs[0] == pytest.approx(0.1 * 0.04)
    assert lrs[1] > lrs[0]
    assert lrs[2] < lrs[1]


# --- emulation settings reach the layers ---------------------------------------------------


def test_wide_weight_storage_keeps_master_weights_on_the_wide_grid(
    tmp_path: Path, data: DatasetPair
) -> None:
    path = tmp_path / "ckpt.pt"
    train(config(epochs=1, schedule="hbfp4", weight_storage="hbfp8"), checkpoint=path, data=data)
    state = torch.load(path, weights_only=True)["model"]
    for name in ("layers.1", "layers.3", "layers.5"):
        weight = state[f"{name}.weight"]
        assert torch.equal(quantize(weight, "hbfp8", dim=1), weight), name
        assert not torch.equal(quantize(weight, "hbfp4", dim=1), weight), name
        bias = state[f"{name}.bias"]
        assert not torch.equal(quantize(bias, "hbfp8", dim=0), bias), name  # biases stay FP32


def test_a_quantized_schedule_changes_training(data: DatasetPair) -> None:
    fp32, hbfp4 = (train(config(epochs=1, schedule=s), data=data) for s in ("fp32", "hbfp4"))
    assert untimed(fp32.epochs[0]) != untimed(hbfp4.epochs[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_a_cuda_step_waits_for_the_device_only_when_the_losses_are_read(
    data: DatasetPair,
) -> None:
    # Each wait for the device warns in this mode: an epoch of 3 or of 12 steps read once
    # waits as often, so no step waits.
    def waits(batch_size: int) -> int:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train(config(epochs=1, batch_size=batch_size, device="cuda"), data=data,
                      sync_every=100)  # fmt: skip
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert waits(32) == waits(8)


@pytest.mark.parametrize("blocking", ["reference", "emulator"])
def test_the_older_emulators_blockings_train_a_cnn(blocking: str) -> None:
    small = {"model": "cnn", "dataset": "mnist-5k", "epochs": 1, "train_size": 128}
    runs = [
        train(TrainConfig(**small, test_size=64, schedule="hbfp4", blocking=b, device="cpu"))
        for b in ("reduction", blocking)
    ]
    assert all(r.status == "done" for r in runs)
    # The same seed and data: only the blocking differs, and it changes the arithmetic.
    assert runs[0].epochs[0].train_loss != runs[1].epochs[0].train_loss
