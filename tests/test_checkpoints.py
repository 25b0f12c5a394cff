"""Checkpoints belong to their run: named and stamped with the store and the run, written
durably beside the previous one, and set aside (never fatal) when unreadable or foreign."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import create_engine, make_url, text

from hbfp_dse.experiments.runner import WorkerOptions, execute_run
from hbfp_dse.experiments.store import NewRun, Provenance, RunRecord, Store
from hbfp_dse.training.checkpoint import (
    CheckpointOwner,
    CheckpointWarning,
    gpu_generator_state,
    previous_checkpoint,
)
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.data import DatasetPair, load_dataset
from hbfp_dse.training.results import EpochRecord
from hbfp_dse.training.trainer import train

CONFIG: dict[str, Any] = {
    "model": "mlp",
    "train_size": 96,
    "test_size": 64,
    "epochs": 2,
    "batch_size": 32,
    "device": "cpu",
}
OWNER = CheckpointOwner(store_id="store-a", run_hash="hash-1", attempt=1)
PROVENANCE = Provenance(None, None, "3", "2", "0", "test")
LEGACY_DB = Path(__file__).parent / "data" / "results-schema-v2.db"


pytestmark = pytest.mark.usefixtures("eager_quantizer")


@pytest.fixture(scope="module")
def data() -> DatasetPair:
    return load_dataset("mnist-5k", train_size=96, test_size=64)


class StopAfter:
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, record: EpochRecord) -> bool:
        return record.epoch + 1 >= self.epochs


class Starts:
    def __init__(self) -> None:
        self.at: list[int] = []

    def on_start(
        self, total_epochs: int, steps_per_epoch: int, history: Sequence[EpochRecord]
    ) -> None:
        self.at.append(len(history))


class InterruptAfterFirstEpoch:
    def on_epoch_end(self, record: EpochRecord) -> bool:
        raise KeyboardInterrupt


def config(**changes: Any) -> TrainConfig:
    return TrainConfig.model_validate(CONFIG | changes)


def truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def history(path: Path) -> list[int]:
    return [r["epoch"] for r in torch.load(path, weights_only=True)["history"]]


# Through the trainer, with owner stamps ----------------------------------------------------


def test_a_save_keeps_the_previous_checkpoint_and_stamps_its_owner(
    tmp_path: Path, data: DatasetPair
) -> None:
    path = tmp_path / "run.pt"
    train(config(), checkpoint=path, data=data, owner=OWNER)
    assert history(path) == [0, 1]
    assert history(previous_checkpoint(path)) == [0]
    assert previous_checkpoint(path).name == "run.prev.pt"
    stamp = torch.load(path, weights_only=True)["owner"]
    assert stamp == {"store_id": "store-a", "run_hash": "hash-1", "attempt": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.prev.pt", "run.pt"]


def test_the_write_goes_through_a_per_attempt_file_and_fsync(
    tmp_path: Path, data: DatasetPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    replaced: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    def replace(source: Any, target: Any) -> None:
        replaced.append((Path(source).name, Path(target).name))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "run.pt"
    owner = CheckpointOwner("store-a", "hash-1", attempt=3)
    train(config(), checkpoint=path, data=data, owner=owner)
    assert replaced == [
        ("run.pt.attempt-3.tmp", "run.pt"),
        ("run.pt", "run.prev.pt"),
        ("run.pt.attempt-3.tmp", "run.pt"),
    ]
    assert len(synced) == 4  # the file and its directory, for each of two epochs


def test_another_runs_checkpoint_is_refused_and_set_aside(
    tmp_path: Path, data: DatasetPair
) -> None:
    path = tmp_path / "run.pt"
    train(config(), checkpoint=path, callbacks=[StopAfter(1)], data=data, owner=OWNER)
    for other in (
        CheckpointOwner("store-b", OWNER.run_hash, OWNER.attempt),
        CheckpointOwner(OWNER.store_id, "hash-2", OWNER.attempt),
    ):
        starts = Starts()
        with pytest.warns(CheckpointWarning, match="belongs to another run"):
            result = train(config(), checkpoint=path, callbacks=[starts], data=data, owner=other)
        assert (starts.at, result.status) == ([0], "done")
        path.unlink()
        previous_checkpoint(path).unlink()
        train(config(), checkpoint=path, callbacks=[StopAfter(1)], data=data, owner=OWNER)
    assert len(list(tmp_path.glob("run.pt.foreign-*"))) == 2  # kept, never deleted


def test_a_later_attempt_of_the_same_run_resumes(tmp_path: Path, data: DatasetPair) -> None:
    path = tmp_path / "run.pt"
    train(config(), checkpoint=path, callbacks=[StopAfter(1)], data=data, owner=OWNER)
    starts = Starts()
    later = CheckpointOwner(OWNER.store_id, OWNER.run_hash, attempt=2)
    train(config(), checkpoint=path, callbacks=[starts], data=data, owner=later)
    assert starts.at == [1]
    assert torch.load(path, weights_only=True)["owner"]["attempt"] == 2


def test_a_truncated_checkpoint_resumes_from_the_previous_one(
    tmp_path: Path, data: DatasetPair
) -> None:
    path = tmp_path / "run.pt"
    straight = train(config(epochs=3), data=data)
    train(config(epochs=3), checkpoint=path, callbacks=[StopAfter(2)], data=data, owner=OWNER)
    truncate(path)
    starts = Starts()
    with pytest.warns(CheckpointWarning, match="cannot be read"):
        resumed = train(
            config(epochs=3), checkpoint=path, callbacks=[starts], data=data, owner=OWNER
        )
    assert (starts.at, resumed.status) == ([1], "done")
    assert [r.test_acc for r in resumed.epochs] == [r.test_acc for r in straight.epochs]
    [aside] = tmp_path.glob("run.pt.unreadable-*")
    assert aside.stat().st_size > 0


def test_a_truncated_checkpoint_without_a_previous_one_starts_over(
    tmp_path: Path, data: DatasetPair
) -> None:
    path = tmp_path / "run.pt"
    train(config(), checkpoint=path, callbacks=[StopAfter(1)], data=data)
    assert not previous_checkpoint(path).exists()
    truncate(path)
    starts = Starts()
    with pytest.warns(CheckpointWarning, match="cannot be read"):
        result = train(config(), checkpoint=path, callbacks=[starts], data=data)
    assert (starts.at, result.status) == ([0], "done")
    assert history(path) == [0, 1]


# Through the store and the runner --------------------------------------------------------


def one_run_store(where: Path | str, sweep: str = "sweep") -> Store:
    """A store (a SQLite file, or a URL) with one sweep of one run."""
    store = Store(f"sqlite:///{where}" if isinstance(where, Path) else where)
    run = NewRun(
        run_hash="same-file-same-hash",
        config_id="c",
        label="mlp",
        kind="grid",
        config=CONFIG,
        seed=0,
        density=1.0,
        density_vs_bf16=0.5,
        mac_share={"fp32": 1.0},
        schedule=[],
    )
    store.register(sweep, f"name: {sweep}\n", PROVENANCE, [run])
    return store


def claim(store: Store, sweep: str = "sweep") -> RunRecord:
    run = store.claim(store.sweep_id(sweep), "test-worker:1")
    assert run is not None
    return run


def test_two_stores_sharing_a_checkpoint_dir_keep_their_own_checkpoints(
    tmp_path: Path,
) -> None:
    shared = WorkerOptions(checkpoint_dir=tmp_path / "checkpoints")
    a, b = one_run_store(tmp_path / "a.db"), one_run_store(tmp_path / "b.db")
    assert a.store_id != b.store_id
    run_a, run_b = claim(a), claim(b)
    assert (run_a.id, run_a.run_hash) == (run_b.id, run_b.run_hash)
    with pytest.raises(KeyboardInterrupt):
        execute_run(a, run_a, shared, callbacks=[InterruptAfterFirstEpoch()])
    [written] = (tmp_path / "checkpoints").iterdir()
    assert written.name == f"run-{a.store_id[:12]}-{run_a.run_hash}.pt"

    result = execute_run(b, run_b, shared)
    assert result is not None
    assert result.status == "done"
    assert b.run(run_b.id).resumed_from_epoch is None  # trained from epoch 0, not from A's
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [written.name]

    result = execute_run(a, claim(a), shared)
    assert result is not None
    assert result.status == "done"
    resumed = a.run(run_a.id)
    assert (resumed.status, resumed.resumed_from_epoch) == ("done", 1)
    assert list((tmp_path / "checkpoints").iterdir()) == []
    a.close()
    b.close()


def test_a_run_whose_checkpoint_is_truncated_restarts_and_finishes(tmp_path: Path) -> None:
    options = WorkerOptions(checkpoint_dir=tmp_path / "checkpoints")
    store = one_run_store(tmp_path / "results.db")
    run = claim(store)
    with pytest.raises(KeyboardInterrupt):
        execute_run(store, run, options, callbacks=[InterruptAfterFirstEpoch()])
    [written] = (tmp_path / "checkpoints").iterdir()
    truncate(written)
    with pytest.warns(CheckpointWarning, match="cannot be read"):
        result = execute_run(store, claim(store), options)
    assert result is not None
    assert result.status == "done"
    finished = store.run(run.id)
    assert (finished.status, finished.resumed_from_epoch, finished.attempts) == ("done", None, 2)
    assert [e.epoch for e in finished.epochs] == [0, 1]
    [aside] = (tmp_path / "checkpoints").iterdir()
    assert aside.name.startswith(f"{written.name}.unreadable-")
    store.close()


def test_a_store_keeps_one_identity_and_an_older_store_gets_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    first = Store(url)
    again = Store(url, create=False)
    assert first.store_id == again.store_id
    assert len(first.store_id) == 36  # a UUID
    legacy = shutil.copyfile(LEGACY_DB, tmp_path / "legacy.db")
    opened = Store(f"sqlite:///{legacy}", create=False)
    assert Store(f"sqlite:///{legacy}", create=False).store_id == opened.store_id
    for store in (first, again, opened):
        store.close()


def test_two_postgresql_stores_sharing_the_default_checkpoint_dir_keep_their_own(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every non-SQLite URL defaults to ./hbfp-checkpoints: two databases, one directory.
    monkeypatch.chdir(tmp_path)
    schema = f"hbfp_second_{uuid.uuid4().hex[:8]}"
    with closing(create_engine(pg_url).connect()) as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
        connection.commit()
    second = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    name = f"shared-{uuid.uuid4().hex[:8]}"
    a = one_run_store(pg_url, name)
    b = one_run_store(second.render_as_string(hide_password=False), name)
    try:
        options = WorkerOptions()
        with pytest.raises(KeyboardInterrupt):
            execute_run(a, claim(a, name), options, callbacks=[InterruptAfterFirstEpoch()])
        [written] = (tmp_path / "hbfp-checkpoints").iterdir()
        result = execute_run(b, claim(b, name), options)
        assert result is not None
        assert result.status == "done"
        assert b.runs(name)[0].resumed_from_epoch is None  # not from A's checkpoint
        assert [p.name for p in (tmp_path / "hbfp-checkpoints").iterdir()] == [written.name]
        resumed = execute_run(a, claim(a, name), options)
        assert resumed is not None
        assert a.runs(name)[0].resumed_from_epoch == 1
    finally:
        a.close()
        b.close()
        with closing(create_engine(pg_url).connect()) as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            connection.commit()


# Across devices -----------------------------------------------------------------------------


def test_a_cpu_run_saves_no_gpu_generator_and_one_from_every_gpu_resumes_on_the_cpu(
    tmp_path: Path, data: DatasetPair
) -> None:
    path = tmp_path / "run.pt"
    straight = train(config(), data=data)
    train(config(), checkpoint=path, data=data, callbacks=[StopAfter(1)])
    saved = torch.load(path, weights_only=True)
    assert saved["rng"]["cuda"] == []  # no CUDA context for a CPU run, even on a GPU machine
    # As written by a run on a machine with three GPUs, before one state was kept.
    saved["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 3
    torch.save(saved, path)
    resumed = train(config(), checkpoint=path, data=data)
    assert [r.test_acc for r in resumed.epochs] == [r.test_acc for r in straight.epochs]


def test_the_gpu_generator_state_a_resumed_run_continues() -> None:
    one, every = [torch.tensor([1])], [torch.tensor([i]) for i in range(3)]
    assert gpu_generator_state([], 0) is None  # trained on the CPU so far: seeded afresh
    assert gpu_generator_state(one, 5) is one[0]  # its GPU's, whichever GPU it is on now
    assert gpu_generator_state(every, 2) is every[2]
    assert gpu_generator_state(every, 7) is every[0]  # fewer GPUs then than its index now


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize(("first", "then"), [("cpu", "cuda"), ("cuda", "cpu")])
def test_a_run_resumes_on_another_kind_of_device(
    tmp_path: Path, data: DatasetPair, first: str, then: str
) -> None:
    path = tmp_path / "run.pt"
    train(config(device=first), checkpoint=path, data=data, callbacks=[StopAfter(1)])
    resumed = train(config(device=then), checkpoint=path, data=data)
    assert resumed.status == "done"
    assert len(resumed.epochs) == 2
    assert resumed.device.startswith(then)
