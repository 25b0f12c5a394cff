"""The results store: SQLite settings, schema checks, registering and claiming runs, and
several processes claiming one sweep's runs at once on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import random
import socket
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_runs import ENVIRONMENT, PROVENANCE
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from hbfp_dse.emulation import OperandStatistics
from hbfp_dse.errors import UserError
from hbfp_dse.experiments.store import (
    FINISHED_STATUSES,
    AttemptRecord,
    LostRunError,
    NewRun,
    Provenance,
    RunRecord,
    Store,
    SweepRecord,
    UnknownRunError,
    UnknownSweepError,
    utcnow,
    worker_name,
)
from hbfp_dse.experiments.store.liveness import WorkerIdentity, process_space
from hbfp_dse.experiments.store.migrate import SCHEMA_VERSION
from hbfp_dse.experiments.store.schema import (
    AttemptRow,
    EpochRow,
    OperandStatisticsRow,
    RunRow,
    SweepRow,
)
from hbfp_dse.training.results import EPOCH_COLUMNS, EpochRecord


def fake_runs(n: int, prefix: str = "r") -> list[NewRun]:
    return [
        NewRun(
            run_hash=f"{prefix}{i:04d}",
            config_id=f"{prefix}{i:04d}"[:-1],
            label=f"{prefix}{i}",
            kind="grid",
            config={"index": i},
            seed=i % 2,
            density=1.0,
            density_vs_bf16=0.5,
            mac_share={"fp32": 1.0},
            schedule=[],
        )
        for i in range(n)
    ]


def register(store: Store, name: str, n: int) -> tuple[int, list[int]]:
    return store.register(name, f"name: {name}\n", PROVENANCE, fake_runs(n))


def dead_pid() -> int:
    """A pid no process has: above the kernel's largest."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**22 + 1


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture
def store(store_url: str) -> Any:
    store = Store(store_url)
    yield store
    store.close()


# SQLite ---------------------------------------------------------------------------------


def test_a_fresh_sqlite_store_uses_wal_foreign_keys_and_a_busy_timeout(
    tmp_path: Path, sqlite_url: str
) -> None:
    store = Store(sqlite_url)
    with store.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() >= 10_000
    orphan = {"sweep_id": 999, "run_hash": "x", "config_id": "x", "label": "x", "kind": "x"}
    # Foreign keys are enforced.
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert(RunRow).values(**orphan, config={}, seed=0))
    store.close()
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(tmp_path / "results.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        meta = dict(raw.execute("SELECT key, value FROM hbfp_meta"))
    assert {"hbfp_meta", "hbfp_sweeps", "hbfp_runs", "hbfp_epochs"} <= tables
    assert all(t.startswith(("hbfp_", "sqlite_", "ix_hbfp_")) for t in tables)
    assert meta == {
        "application": "hbfp-dse",
        "schema_version": str(SCHEMA_VERSION),
        "store_id": store.store_id,
    }


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    Store(sqlite_url).close()
    with sqlite3.connect(tmp_path / "results.db") as raw:
        raw.execute("UPDATE hbfp_meta SET value = '99' WHERE key = 'schema_version'")
    for create in (True, False):
        expected = rf"schema version 99; this hbfp-dse reads version {SCHEMA_VERSION}"
        with pytest.raises(UserError, match=expected):
            Store(sqlite_url, create=create)


def test_meta_of_another_application_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    Store(sqlite_url).close()
    with sqlite3.connect(tmp_path / "results.db") as raw:
        raw.execute("UPDATE hbfp_meta SET value = 'other' WHERE key = 'application'")
    with pytest.raises(UserError, match="is not an hbfp-dse results database"):
        Store(sqlite_url)


def test_a_database_with_foreign_tables_is_refused_and_left_alone(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = tmp_path / "results.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        raw.execute("INSERT INTO users (name) VALUES ('ada')")
    raw.close()
    before = path.read_bytes()
    for create in (True, False):
        with pytest.raises(UserError, match=r"is not an hbfp-dse results database.*'users'"):
            Store(sqlite_url, create=create)
    assert path.read_bytes() == before
    with sqlite3.connect(path) as raw:
        assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master")] == ["users"]
    raw.close()


def test_optuna_tables_may_share_the_database(tmp_path: Path, sqlite_url: str) -> None:
    with sqlite3.connect(tmp_path / "results.db") as raw:
        raw.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY)")
        raw.execute("CREATE TABLE version_info (version_info_id INTEGER PRIMARY KEY)")
    raw.close()
    store = Store(sqlite_url)
    assert register(store, "with-optuna", 2)[1] == [1, 2]
    store.close()


def test_reading_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(UserError, match=r"no results database at .*missing\.db"):
        Store(f"sqlite:///{path}", create=False)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_database_holds_no_results_yet(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with pytest.raises(UserError, match="holds no hbfp-dse results yet"):
        Store(f"sqlite:///{path}", create=False)


def test_a_store_in_a_missing_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        Store(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://x:s3cret@127.0.0.1:54x2/db", "postgresql://x:s3@cret@host:99999999/db"],
)
def test_a_malformed_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(UserError) as caught:
        Store(url)
    assert "s3" not in str(caught.value)
    assert "cret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_bad_urls_are_user_errors() -> None:
    with pytest.raises(UserError, match="not a valid SQLAlchemy URL"):
        Store("not a url")
    with pytest.raises(UserError, match="cannot use database"):
        Store("nosuchdialect://x/y")
    with pytest.raises(UserError, match=r"cannot open database postgresql\+psycopg://x:\*\*\*@"):
        Store("postgresql+psycopg://x:secret@127.0.0.1:1/none")


# Both backends --------------------------------------------------------------------------


def test_register_twice_is_idempotent(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 5)
    assert len(set(ids)) == 5
    run = store.claim(sweep_id, "other-host:1")
    assert run is not None
    store.finish(run.lease, "done", final_acc=0.5)
    again_id, again = register(store, sweep_name, 5)
    assert (again_id, again) == (sweep_id, ids)
    assert store.status_counts(sweep_id) == {"done": 1, "pending": 4}
    # A grown sweep keeps the stored runs and adds the new ones.
    more = store.register(sweep_name, "v2", PROVENANCE, fake_runs(7))[1]
    assert more[:5] == ids
    assert len(set(more)) == 7
    assert store.status_counts(sweep_id) == {"done": 1, "pending": 6}
    assert store.sweep_names().count(sweep_name) == 1


def test_retry_failed_makes_failed_runs_pending(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 2)
    run = store.claim(sweep_id, "other-host:1")
    store.finish(run.lease, "failed", error="boom")
    register(store, sweep_name, 2)
    assert store.status_counts(sweep_id) == {"failed": 1, "pending": 1}
    store.register(sweep_name, "", PROVENANCE, fake_runs(2), retry_failed=True)
    assert store.status_counts(sweep_id) == {"pending": 2}
    assert store.run(ids[0]).error is None


@pytest.mark.slow
def test_more_runs_than_a_statement_may_bind_register_in_chunks(
    store: Store, sweep_name: str
) -> None:
    many = 100_000  # PostgreSQL binds at most 65,535 parameters per statement
    sweep_id, ids = store.register(sweep_name, "", PROVENANCE, fake_runs(many, "m"))
    assert len(set(ids)) == many
    assert store.count_finished(sweep_id, ids) == 0
    assert store.register(sweep_name, "", PROVENANCE, fake_runs(many, "m"))[1] == ids


def test_claims_come_in_run_order_then_none(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 4)
    claimed = [store.claim(sweep_id, f"other-host:{i}") for i in range(4)]
    assert [r.id for r in claimed] == ids
    assert all(r.status == "running" and r.attempts == 1 for r in claimed)
    assert [r.worker for r in claimed] == [f"other-host:{i}" for i in range(4)]
    assert store.claim(sweep_id, "other-host:9") is None
    # An interrupted run is taken again first: it has the lowest id.
    assert store.interrupt(claimed[1].lease)
    store.finish(claimed[2].lease, "done")
    again = store.claim(sweep_id, "other-host:9")
    assert (again.id, again.attempts, again.worker) == (ids[1], 2, "other-host:9")
    assert store.claim(sweep_id, "other-host:9") is None


def test_claim_only_the_given_runs(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 4)
    assert store.claim(sweep_id, "other-host:1", run_ids=[ids[2]]).id == ids[2]
    assert store.claim(sweep_id, "other-host:1", run_ids=[ids[2]]) is None


def test_a_stale_heartbeat_is_reclaimed(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 2)
    first = store.claim(sweep_id, "other-host:1")
    store.hold(first.lease)
    # A fresh heartbeat holds the run: another worker gets the next one.
    assert store.claim(sweep_id, "other-host:2", stale_after=60).id == ids[1]
    with store.engine.begin() as connection:
        connection.execute(
            update(RunRow)
            .where(RunRow.id == first.id)
            .values(heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    assert store.claim(sweep_id, "other-host:3", stale_after=600) is None  # not stale yet
    taken = store.claim(sweep_id, "other-host:3", stale_after=60)
    assert (taken.id, taken.worker, taken.attempts) == (first.id, "other-host:3", 2)
    # The first worker learns it lost the run at its next heartbeat, and can write nothing:
    # no epoch, no outcome, no interruption (fencing).
    with pytest.raises(LostRunError):
        store.hold(first.lease)
    with pytest.raises(LostRunError, match="now held by other-host:3"):
        store.record_epoch(first.lease, epoch_record(0, 0.9))
    with pytest.raises(LostRunError):
        store.finish(first.lease, "failed", error="the old owner's")
    assert not store.interrupt(first.lease)
    stored = store.run(first.id)
    assert (stored.status, stored.worker, stored.error, stored.epochs) == (
        "running",
        "other-host:3",
        None,
        (),
    )
    store.hold(taken.lease)


def test_a_dead_local_workers_run_is_reclaimed(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 3)
    host, space = socket.gethostname(), process_space()
    alive = store.claim(sweep_id, worker_name())  # this very process: alive
    dead = store.claim(sweep_id, f"{host}:{dead_pid()}:{space}:0000dead")
    assert (alive.id, dead.id) == (ids[0], ids[1])
    # Fresh heartbeats, but the second worker's process is gone: its run is taken again.
    taken = store.claim(sweep_id, "other-host:1", stale_after=3600)
    assert (taken.id, taken.attempts, taken.worker) == (ids[1], 2, "other-host:1")
    assert store.claim(sweep_id, "other-host:1", stale_after=3600).id == ids[2]
    assert store.claim(sweep_id, "other-host:1", stale_after=3600) is None
    assert store.run(ids[0]).status == "running"


@pytest.mark.parametrize(
    "holder",
    [
        "other-host:{pid}:{space}:0000dead",  # another machine
        "{host}:{pid}:0badf00d:0000dead",  # another container with our host name
        "{like}:{pid}:{space}:0000dead",  # a host name our own matches as a LIKE pattern
        "{host}:{pid}",  # an older release's name: judged by its heartbeat alone
    ],
    ids=["other-host", "other-pid-namespace", "like-wildcard", "older-release"],
)
def test_only_a_worker_of_this_process_space_is_judged_by_its_pid(
    store: Store, sweep_name: str, holder: str
) -> None:
    host = socket.gethostname()
    like = host[:-1] + "_" if host[-1] != "_" else host[:-1] + "%"
    worker = holder.format(host=host, pid=dead_pid(), space=process_space(), like=like)
    sweep_id, _ = register(store, sweep_name, 1)
    store.claim(sweep_id, worker)
    assert store.claim(sweep_id, "other-host:1", stale_after=3600) is None


def test_a_worker_releases_what_it_holds_before_claiming_again(
    store: Store, sweep_name: str
) -> None:
    # A claim whose answer was lost with the connection leaves the run held by its worker.
    sweep_id, ids = register(store, sweep_name, 2)
    me = worker_name()
    store.claim(sweep_id, me)
    again = store.claim(sweep_id, me)
    assert (again.id, again.attempts) == (ids[0], 2)


def test_workers_have_distinct_identities_of_this_process() -> None:
    names = {worker_name() for _ in range(100)}
    assert len(names) == 100
    identity = WorkerIdentity.parse(names.pop())
    assert identity is not None
    assert (identity.host, identity.pid, identity.space) == (
        socket.gethostname(),
        os.getpid(),
        process_space(),
    )
    assert WorkerIdentity.parse("host:12") is None


def epoch_record(epoch: int, acc: float) -> EpochRecord:
    return EpochRecord(epoch, 1.0, acc, 1.0, acc, 0.1, 1.0, 100.0, {"fc": "fp32"})


def test_epochs_are_recorded_once_and_follow_the_checkpoint_on_resume(
    store: Store, sweep_name: str
) -> None:
    sweep_id, _ = register(store, sweep_name, 1)
    run = store.claim(sweep_id, "other-host:1")
    store.start_attempt(run.lease, (), ENVIRONMENT)
    for epoch in range(3):
        store.record_epoch(run.lease, epoch_record(epoch, 0.1))
    store.record_epoch(run.lease, epoch_record(2, 0.2))  # the same epoch again replaces it
    assert [(e.epoch, e.test_acc) for e in store.run(run.id).epochs] == [
        (0, 0.1),
        (1, 0.1),
        (2, 0.2),
    ]
    # Resuming from a checkpoint after epoch 1: epoch 2 is forgotten.
    assert store.interrupt(run.lease)
    run = store.claim(sweep_id, "other-host:2")
    history = [epoch_record(0, 0.1), epoch_record(1, 0.1)]
    store.start_attempt(run.lease, history, ENVIRONMENT)
    stored = store.run(run.id)
    assert [e.epoch for e in stored.epochs] == [0, 1]
    assert (stored.resumed_from_epoch, stored.device) == (2, "cpu")


def test_epochs_the_store_missed_are_restored_from_the_checkpoint(
    store: Store, sweep_name: str
) -> None:
    # The checkpoint after epoch 2 was written, but the store never got epochs 1 and 2 (the
    # database was down; the worker died).
    sweep_id, _ = register(store, sweep_name, 1)
    run = store.claim(sweep_id, "other-host:1")
    store.start_attempt(run.lease, (), ENVIRONMENT)
    store.record_epoch(run.lease, epoch_record(0, 0.1))
    assert store.interrupt(run.lease)
    run = store.claim(sweep_id, "other-host:2")
    history = [epoch_record(0, 0.1), epoch_record(1, 0.2), epoch_record(2, 0.3)]
    store.start_attempt(run.lease, history, ENVIRONMENT)
    assert store.run(run.id).epochs == tuple(history)
    # Repeating the start (its first commit lost in transit) changes nothing.
    store.start_attempt(run.lease, history, ENVIRONMENT)
    assert store.run(run.id).epochs == tuple(history)
    attempts = store.attempts([run.id])[run.id]
    assert [(a.attempt, a.worker, a.start_epoch) for a in attempts] == [
        (1, "other-host:1", 0),
        (2, "other-host:2", 3),
    ]
    assert attempts[1].cpu_threads == ENVIRONMENT.cpu_threads


def with_statistics(record: EpochRecord, sqnr: float | None) -> EpochRecord:
    statistics = [
        OperandStatistics("fc", operand, "hbfp4", 2, sqnr, 0.1, 0.05, 0.2, 0.01, -9, 3)
        for operand in ("x_forward", "dy_wgrad")
    ]
    return dataclasses.replace(record, statistics=statistics)


def test_operand_statistics_are_kept_per_epoch_and_follow_the_checkpoint(
    store: Store, sweep_name: str
) -> None:
    sweep_id, _ = register(store, sweep_name, 2)
    run = store.claim(sweep_id, "other-host:1")
    store.start_attempt(run.lease, (), ENVIRONMENT)
    first, second = (with_statistics(epoch_record(e, 0.1), 20.0 + e) for e in range(2))
    store.record_epoch(run.lease, first)
    store.record_epoch(run.lease, second)
    store.record_epoch(run.lease, with_statistics(epoch_record(1, 0.1), math.inf))  # again
    found = store.operand_statistics([run.id, run.id + 1])
    assert found[run.id + 1] == []
    assert [(epoch, s.operand, s.sqnr_db) for epoch, s in found[run.id]] == [
        (0, "dy_wgrad", 20.0),
        (0, "x_forward", 20.0),
        (1, "dy_wgrad", math.inf),
        (1, "x_forward", math.inf),
    ]
    assert found[run.id][1][1] == first.statistics[0]
    assert store.run(run.id).epochs[0] == epoch_record(0, 0.1)  # epochs read without them
    # Resuming from the checkpoint after epoch 0: the statistics are the checkpoint's.
    assert store.interrupt(run.lease)
    run = store.claim(sweep_id, "other-host:2")
    store.start_attempt(run.lease, [with_statistics(epoch_record(0, 0.1), None)], ENVIRONMENT)
    assert [(e, s.sqnr_db) for e, s in store.operand_statistics([run.id])[run.id]] == [
        (0, None),
        (0, None),
    ]


def test_a_repeated_outcome_is_not_a_lost_run(store: Store, sweep_name: str) -> None:
    sweep_id, _ = register(store, sweep_name, 1)
    run = store.claim(sweep_id, "other-host:1")
    store.finish(run.lease, "done", final_acc=0.5)
    store.finish(run.lease, "done", final_acc=0.5)  # a retry whose first commit went through
    with pytest.raises(LostRunError):
        store.finish(run.lease, "failed")
    assert store.run(run.id).status == "done"


def test_runs_leave_the_store_as_frozen_records(store: Store, sweep_name: str) -> None:
    sweep_id, ids = register(store, sweep_name, 2)
    lease = store.claim(sweep_id, "other-host:1").lease
    store.start_attempt(lease, (), ENVIRONMENT)
    store.record_epoch(lease, EpochRecord(0, 1.0, 0.5, 1.0, 0.5, 0.1, 1.0, 9.0, {"fc": "fp32"}))
    store.finish(lease, "done", final_acc=0.5, best_acc=0.5)
    plain, with_epochs = store.runs(sweep_name), store.runs(sweep_name, with_epochs=True)
    assert all(isinstance(r, RunRecord) for r in plain + with_epochs)
    assert [(r.sweep, r.sweep_id, r.epochs) for r in plain] == [(sweep_name, sweep_id, ())] * 2
    assert [len(r.epochs) for r in with_epochs] == [1, 0]
    run = store.run(ids[0])
    assert (run.status, run.final_acc, run.device) == ("done", 0.5, "cpu")
    assert [e.test_acc for e in run.epochs] == [0.5]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "failed"  # type: ignore[misc]
    sweep = store.sweep(sweep_name)
    assert (sweep.id, sweep.name, sweep.host) == (sweep_id, sweep_name, "test")


def test_records_match_the_tables() -> None:
    columns = {c.key for c in RunRow.__table__.columns}
    assert {f.name for f in dataclasses.fields(RunRecord)} == columns | {"sweep", "epochs"}
    assert {f.name for f in dataclasses.fields(NewRun)} <= columns
    epoch_columns = {c.key for c in EpochRow.__table__.columns} - {"run_id"}
    assert {f.name for f in dataclasses.fields(EpochRecord)} == epoch_columns | {"statistics"}
    assert set(EPOCH_COLUMNS) == epoch_columns
    statistics_columns = {c.key for c in OperandStatisticsRow.__table__.columns}
    assert {f.name for f in dataclasses.fields(OperandStatistics)} == statistics_columns - {
        "run_id",
        "epoch",
    }
    sweep_columns = {c.key for c in SweepRow.__table__.columns}
    assert {f.name for f in dataclasses.fields(SweepRecord)} == sweep_columns
    attempt_columns = {c.key for c in AttemptRow.__table__.columns}
    assert {f.name for f in dataclasses.fields(AttemptRecord)} == attempt_columns
    provenance = {f.name for f in dataclasses.fields(Provenance)}
    assert provenance <= sweep_columns


def test_finished_runs_are_counted(store: Store, sweep_name: str) -> None:
    sweep_id, _ = register(store, sweep_name, 7)
    statuses = ("done", "failed", "diverged", "pruned", "interrupted", "running")
    for status in statuses:
        lease = store.claim(sweep_id, "other-host:1").lease
        if status == "interrupted":
            store.interrupt(lease)
            store.claim(sweep_id, "other-host:2")  # and taken again: it is the one running
            break
        store.finish(lease, status)
    assert store.count_finished(sweep_id) == len(FINISHED_STATUSES) == 4


def test_unknown_sweeps_and_runs_are_errors_with_their_data(store: Store, sweep_name: str) -> None:
    register(store, sweep_name, 1)
    with pytest.raises(UnknownSweepError, match=r"no sweep named 'nosuch' in .*\(sweeps: ") as err:
        store.sweep_id("nosuch")
    assert (err.value.name, sweep_name in err.value.known) == ("nosuch", True)
    with pytest.raises(UnknownRunError, match="no run 99999 in ") as missing:
        store.run(99999)
    assert missing.value.run_id == 99999


# Concurrency ----------------------------------------------------------------------------

WORKERS = 4
RUNS = 40
_BARRIERS: tuple[Any, Any] | None = None


def _init_claimer(start: Any, holding: Any) -> None:
    global _BARRIERS
    _BARRIERS = (start, holding)
    import hbfp_dse.experiments.store  # noqa: F401  (the slow import, before any test waits)


def claim_loop(url: str, sweep_id: int, seed: int) -> tuple[str, list[int]]:
    """A worker whose training is a short sleep; returns the runs it claimed."""
    assert _BARRIERS is not None
    start, holding = _BARRIERS
    claimed: list[int] = []
    worker = worker_name()
    store = Store(url, create=False)
    rng = random.Random(seed)
    try:
        start.wait(timeout=120)  # every worker has connected: go together
        first = True
        while True:
            run = store.claim(sweep_id, worker, stale_after=3600)
            if first:
                # Every worker holds a run at the same time before any finishes.
                first = False
                holding.wait(timeout=120)
            if run is None:
                break
            claimed.append(run.id)
            time.sleep(rng.uniform(0.002, 0.012))
            store.finish(run.lease, "done")
    finally:
        store.close()
    return worker, claimed


@pytest.fixture(scope="module")
def claimers() -> Any:
    """Four spawned processes, shared by the backends: spawning and importing torch is the
    slow part."""
    context = multiprocessing.get_context("spawn")
    barriers = (context.Barrier(WORKERS), context.Barrier(WORKERS))
    with context.Pool(WORKERS, initializer=_init_claimer, initargs=barriers) as pool:
        yield pool


def test_concurrent_workers_claim_every_run_exactly_once(
    claimers: Any, store_url: str, sweep_name: str
) -> None:
    store = Store(store_url)
    sweep_id, ids = register(store, sweep_name, RUNS)
    # One task per process: each blocks on the barriers until all four have started.
    tasks = [(store_url, sweep_id, seed) for seed in range(WORKERS)]
    reports = claimers.starmap_async(claim_loop, tasks, chunksize=1).get(timeout=300)
    claims = dict(reports)
    assert len(claims) == WORKERS, "four distinct worker processes"
    every = [run_id for claimed in claims.values() for run_id in claimed]
    assert sorted(every) == sorted(ids), "a run was claimed twice or lost"
    assert all(claims.values()), "every worker claimed at least one run"
    stored = {r.id: r for r in store.runs(sweep_name)}
    assert len(stored) == RUNS
    for worker, claimed in claims.items():
        for run_id in claimed:
            assert (stored[run_id].status, stored[run_id].attempts) == ("done", 1)
            assert stored[run_id].worker == worker
    assert os.getpid() not in {WorkerIdentity.parse(w).pid for w in claims}
    store.close()
