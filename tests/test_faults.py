"""Faults a sweep meets while it trains, each against SQLite and the PostgreSQL test server: a
fault of the machine leaves its run interrupted and stops a worker that keeps meeting them; a
worker whose run was taken over while it still lived stops at once and writes nothing more;
clock skew between hosts makes no live run claimable; an epoch checkpointed but never stored
is restored on resume."""

from __future__ import annotations

import errno
import re
import time
from datetime import timedelta
from typing import Any

import pytest
import torch
from sqlalchemy import update

import hbfp_dse.experiments.runner as runner
from hbfp_dse.experiments.runner import (
    EnvironmentFaultError,
    WorkerOptions,
    execute_run,
    work,
)
from hbfp_dse.experiments.store import NewRun, Provenance, RunRecord, Store, utcnow
from hbfp_dse.experiments.store import store as store_module
from hbfp_dse.experiments.store.schema import RunRow
from hbfp_dse.training.results import EpochRecord

CONFIG: dict[str, Any] = {
    "model": "mlp",
    "train_size": 256,
    "test_size": 64,
    "epochs": 2,
    "batch_size": 16,
    "device": "cpu",
}
PROVENANCE = Provenance(None, None, "3", "2", "0", "test")

pytestmark = pytest.mark.usefixtures("eager_quantizer")


def register(store: Store, sweep: str, runs: int = 1) -> tuple[int, list[int]]:
    planned = [
        NewRun(
            run_hash=f"{sweep}-{i}",
            config_id=f"{sweep}-{i}",
            label=f"mlp-{i}",
            kind="grid",
            config={**CONFIG, "seed": i},
            seed=i,
            density=1.0,
            density_vs_bf16=0.5,
            mac_share={"fp32": 1.0},
            schedule=[],
        )
        for i in range(runs)
    ]
    return store.register(sweep, f"name: {sweep}\n", PROVENANCE, planned)


@pytest.fixture
def store(store_url: str) -> Any:
    opened = Store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def options(tmp_path: Any) -> WorkerOptions:
    return WorkerOptions(checkpoint_dir=tmp_path / "checkpoints")


def claim(store: Store, sweep_id: int, worker: str = "host-a:1:-:0001") -> RunRecord:
    run = store.claim(sweep_id, worker, stale_after=3600)
    assert run is not None
    return run


def raising(error: BaseException) -> Any:
    def train(*args: Any, **kwargs: Any) -> Any:
        raise error

    return train


# Faults of the environment ----------------------------------------------------------------

FAULTS = {
    "disk-full": OSError(errno.ENOSPC, "No space left on device"),
    "cuda-out-of-memory": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
    "lost-gpu": RuntimeError("CUDA error: an illegal memory access was encountered"),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_fault_of_the_machine_leaves_the_run_interrupted(
    store: Store,
    sweep_name: str,
    options: WorkerOptions,
    fault: BaseException,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep_id, (run_id,) = register(store, sweep_name)
    monkeypatch.setattr(runner, "train", raising(fault))
    with pytest.raises(EnvironmentFaultError, match=re.escape(str(fault))):
        execute_run(store, claim(store, sweep_id), options)
    stored = store.run(run_id)
    assert stored.status == "interrupted"
    assert stored.error is not None
    assert stored.error == f"environment fault: {type(fault).__name__}: {fault}"
    assert stored.faults == 1
    assert claim(store, sweep_id).id == run_id  # for another attempt


@pytest.mark.parametrize(
    ("run_device", "worker_device", "reason"),
    [
        ("cuda", "cuda:99", "CUDA is not available here|this machine has"),
        ("cpu", "cuda:0", "this run was registered to train on cpu"),
    ],
)
def test_a_device_this_worker_cannot_use_leaves_the_run_interrupted(
    store: Store,
    sweep_name: str,
    tmp_path: Any,
    run_device: str,
    worker_device: str,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(CONFIG, "device", run_device)
    sweep_id, (run_id,) = register(store, sweep_name)
    options = WorkerOptions(device=worker_device, checkpoint_dir=tmp_path)
    with pytest.raises(EnvironmentFaultError, match=reason):
        execute_run(store, claim(store, sweep_id), options)
    assert store.run(run_id).status == "interrupted"


BUGS = {
    "value-error": ValueError("a bug"),
    "device-side-assert": RuntimeError("CUDA error: device-side assert triggered"),
    "no-cuda-kernel": NotImplementedError("Could not run 'aten::foo' with the 'CUDA' backend"),
    "unrelated-words": RuntimeError("index out of memory bounds"),
}


@pytest.mark.parametrize("bug", BUGS.values(), ids=BUGS.keys())
def test_a_bug_still_fails_its_run(
    store: Store,
    sweep_name: str,
    options: WorkerOptions,
    monkeypatch: pytest.MonkeyPatch,
    bug: BaseException,
) -> None:
    sweep_id, (run_id,) = register(store, sweep_name)
    monkeypatch.setattr(runner, "train", raising(bug))
    assert execute_run(store, claim(store, sweep_id), options) is None
    stored = store.run(run_id)
    assert stored.status == "failed"
    assert stored.error is not None
    assert f"{type(bug).__name__}: {bug}" in stored.error


def test_a_worker_meeting_faults_stops_instead_of_draining_the_sweep(
    store: Store, sweep_name: str, options: WorkerOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id, _ = register(store, sweep_name, runs=6)
    monkeypatch.setattr(runner, "train", raising(FAULTS["disk-full"]))
    events: list[dict[str, Any]] = []
    work(store, sweep_id, options, emit=events.append)
    [stopped] = [e for e in events if e["event"] == "stopped"]
    assert stopped["reason"].startswith("stopped after 3 faults of its machine in a row")
    assert "No space left on device" in stopped["reason"]
    # Three runs tried once each, none failed; the rest left for a sound machine.
    assert store.status_counts(sweep_id) == {"interrupted": 3, "pending": 3}
    assert [run.attempts for run in store.runs(sweep_name)] == [1, 1, 1, 0, 0, 0]


def test_a_run_that_faults_on_every_machine_fails_and_the_sweep_goes_on(
    store: Store, sweep_name: str, options: WorkerOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's own fault after all (say, a batch too large for any GPU): the other runs
    # train, and the run fails at its third fault instead of stalling every worker.
    sweep_id, ids = register(store, sweep_name, runs=3)
    train = runner.train

    def out_of_memory_for_seed_0(config: Any, **kwargs: Any) -> Any:
        if config.seed == 0:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 90 GiB")
        return train(config, **kwargs)

    monkeypatch.setattr(runner, "train", out_of_memory_for_seed_0)
    work(store, sweep_id, options)  # leaves the faulted run to others: trains the two
    assert [store.run(i).status for i in ids] == ["interrupted", "done", "done"]
    work(store, sweep_id, options)  # another worker: a second fault
    work(store, sweep_id, options)  # a third: the run fails
    failed = store.run(ids[0])
    assert (failed.status, failed.faults, failed.attempts) == ("failed", 2, 3)
    assert failed.error is not None
    assert failed.error.startswith("3 attempts stopped by faults of their machine")
    assert "CUDA out of memory" in failed.error


# A takeover while the old owner lives -----------------------------------------------------


class TakeOverAfterFirstEpoch:
    """While the first worker trains, a second takes its run over (its heartbeat looked
    stale); then the first keeps going for a while, as a paused process would."""

    def __init__(self, store: Store, sweep_id: int) -> None:
        self.store, self.sweep_id = store, sweep_id
        self.taken: RunRecord | None = None
        self.steps_after = 0

    def on_epoch_end(self, record: EpochRecord) -> None:
        # The first worker's heartbeat thread may refresh the run in between: try again.
        for _ in range(100):
            if self.taken is not None:
                return
            with self.store.engine.begin() as connection:
                stale = utcnow() - timedelta(hours=1)
                connection.execute(update(RunRow).values(heartbeat_at=stale))
            self.taken = self.store.claim(self.sweep_id, "host-b:2:-:0002", stale_after=60)

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        if self.taken is not None:
            self.steps_after += 1
            # Steps as long as a real model's: the heartbeat thread (every 0.05 s) gets its
            # turn however loaded the machine is, rather than an epoch of tiny steps racing it.
            time.sleep(0.02)


def test_a_worker_whose_run_was_taken_over_stops_at_once_and_writes_nothing(
    store: Store, sweep_name: str, tmp_path: Any
) -> None:
    sweep_id, (run_id,) = register(store, sweep_name)
    options = WorkerOptions(checkpoint_dir=tmp_path, heartbeat_every=0.05, stale_after=1.0)
    takeover = TakeOverAfterFirstEpoch(store, sweep_id)
    events: list[dict[str, Any]] = []
    first = claim(store, sweep_id)
    assert execute_run(store, first, options, emit=events.append, callbacks=[takeover]) is None
    assert takeover.taken is not None
    assert takeover.taken.attempts == 2
    [lost] = [e for e in events if e["event"] == "lost"]
    assert lost["message"] == (
        f"run {run_id} was taken from worker host-a:1:-:0001 (attempt 1): "
        "now held by host-b:2:-:0002"
    )
    # Stopped within a few steps of its heartbeat finding out, not at the end of the epoch.
    assert takeover.steps_after < 256 // 16
    stored = store.run(run_id)
    assert (stored.status, stored.worker, [e.epoch for e in stored.epochs]) == (
        "running",
        "host-b:2:-:0002",
        [0],
    )
    assert not any(e["event"] == "finish" for e in events)
    # The new owner resumes from the checkpoint of epoch 0 and finishes the run.
    result = execute_run(store, takeover.taken, options)
    assert result is not None
    assert result.status == "done"
    finished = store.run(run_id)
    assert (finished.status, finished.resumed_from_epoch) == ("done", 1)
    assert [e.epoch for e in finished.epochs] == [0, 1]
    attempts = store.attempts([run_id])[run_id]
    assert [(a.worker, a.start_epoch) for a in attempts] == [
        ("host-a:1:-:0001", 0),
        ("host-b:2:-:0002", 1),
    ]


def test_a_lost_run_keeps_the_old_owner_from_writing_its_checkpoint(
    store: Store, sweep_name: str, options: WorkerOptions
) -> None:
    sweep_id, _ = register(store, sweep_name)
    takeover = TakeOverAfterFirstEpoch(store, sweep_id)
    assert execute_run(store, claim(store, sweep_id), options, callbacks=[takeover]) is None
    [checkpoint] = [p for p in options.checkpoint_dir.iterdir() if not p.name.endswith(".tmp")]
    saved = torch.load(checkpoint, weights_only=True)
    assert [r["epoch"] for r in saved["history"]] == [0]  # epoch 1 was the new owner's


# Clocks ------------------------------------------------------------------------------------


def test_a_claimer_whose_clock_runs_ahead_takes_no_live_run(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL is shared by hosts whose clocks disagree: staleness is the server's to judge.
    store = Store(pg_url)
    sweep = f"skew-{id(store)}"
    sweep_id, (run_id,) = register(store, sweep)
    claim(store, sweep_id)
    skewed = utcnow() + timedelta(seconds=200)
    monkeypatch.setattr(store_module, "utcnow", lambda: skewed)
    assert store.claim(sweep_id, "host-b:2:-:0002", stale_after=120) is None
    # A heartbeat that is old by the server's clock is stale, whatever the claimer's says.
    with store.engine.begin() as connection:
        old = utcnow() - timedelta(seconds=300)
        connection.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=old))
    monkeypatch.setattr(store_module, "utcnow", lambda: skewed - timedelta(seconds=400))
    taken = store.claim(sweep_id, "host-b:2:-:0002", stale_after=120)
    assert taken is not None
    assert taken.id == run_id
    store.close()


# A crash between the checkpoint and the store -------------------------------------------


class Crash(BaseException):
    """The process dying: nothing in the worker handles it."""


def test_an_epoch_checkpointed_but_never_stored_is_restored_on_resume(
    store: Store, sweep_name: str, options: WorkerOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id, (run_id,) = register(store, sweep_name)
    record_epoch = Store.record_epoch

    def crash_at_epoch_one(self: Store, lease: Any, record: EpochRecord) -> None:
        if record.epoch == 1:
            raise Crash
        record_epoch(self, lease, record)

    with monkeypatch.context() as patch:
        patch.setattr(Store, "record_epoch", crash_at_epoch_one)
        with pytest.raises(Crash):
            execute_run(store, claim(store, sweep_id), options)
    assert [e.epoch for e in store.run(run_id).epochs] == [0]
    with store.engine.begin() as connection:
        stale = utcnow() - timedelta(hours=1)
        connection.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=stale))
    resumed = store.claim(sweep_id, "host-b:2:-:0002", stale_after=60)
    assert resumed is not None
    result = execute_run(store, resumed, options)
    assert result is not None
    assert result.status == "done"
    finished = store.run(run_id)
    assert (finished.status, finished.resumed_from_epoch) == ("done", 2)
    assert [e.epoch for e in finished.epochs] == [0, 1]
    assert finished.epochs == tuple(result.epochs)
