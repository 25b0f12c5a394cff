"""The store's Alembic revisions: a database from before them opens, reports and resumes;
Optuna's tables and version table live beside ours; a database from a newer hbfp-dse is
refused; and the revisions build exactly the tables of ``schema.py``."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from hbfp_dse.cli.app import app
from hbfp_dse.experiments.store import (
    Environment,
    NewerDatabaseError,
    NewRun,
    Provenance,
    Store,
    migrate,
)
from hbfp_dse.experiments.store.migrate import (
    BASELINE,
    SCHEMA_VERSION,
    VERSION_TABLE,
    alembic_config,
    include_name,
    revisions,
)
from hbfp_dse.experiments.store.schema import Base

FIXTURE = Path(__file__).parent / "data" / "results-schema-v2.db"
SWEEP_FIXTURE = Path(__file__).parent / "data" / "sweep-schema-v2"
CLAIM_INDEX = "ix_hbfp_runs_sweep_id_status"  # added by the revision after the baseline
HEAD = revisions().get_current_head()
PROVENANCE = Provenance(None, None, "3", "2", "0", "test")
ENVIRONMENT = Environment(None, None, "3", "2", "0", "test", "cpu", 2, False, False)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def one_run(name: str) -> NewRun:
    return NewRun(name, name, name, "grid", {}, 0, 1.0, 0.5, {"fp32": 1.0}, [])


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic would change to make our tables those of ``schema.py``."""
    with engine.connect() as connection:
        options = {"version_table": VERSION_TABLE, "include_name": include_name}
        context = MigrationContext.configure(connection, opts=options)
        return compare_metadata(context, Base.metadata)


def claim_index_exists(engine: Engine) -> bool:
    return CLAIM_INDEX in {index["name"] for index in inspect(engine).get_indexes("hbfp_runs")}


def to_revision(url: str, revision: str | None) -> None:
    """Take a store back to ``revision``; None: to before Alembic (the baseline, unstamped)."""
    store = Store(url)
    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision or BASELINE)
        if revision is None:
            connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    store.close()


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the store made by hbfp-dse before Alembic (see data/make_schema_v2_db.py)."""
    path = tmp_path / "results.db"
    shutil.copyfile(FIXTURE, path)
    return path


# A database from before Alembic -----------------------------------------------------------


def test_a_sweep_stored_before_alembic_resumes_its_interrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real thing, made by main before this schema (data/make_sweep_v2_db.py): the same
    sweep file finds its runs by their hashes, skips the finished ones and resumes the
    interrupted one from its checkpoint."""
    monkeypatch.setenv("HBFP_DSE_COMPILE", "0")
    folder = tmp_path / "old"
    shutil.copytree(SWEEP_FIXTURE, folder)
    url = sqlite_url(folder / "results.db")
    sweep_file = shutil.copy(SWEEP_FIXTURE.parent / "sweep-v2.yaml", tmp_path / "legacy.yaml")
    result = CliRunner().invoke(app, ["sweep", str(sweep_file), "--db", url])
    assert result.exit_code == 0, result.output
    assert "3 runs, 2 already finished" in result.stderr
    assert "stored before validation splits: it resumes without one" in result.stderr
    store = Store(url, create=False)
    runs = store.runs("legacy-sweep", with_epochs=True)
    store.close()
    assert [(r.label, r.status) for r in runs] == [
        ("fp32", "done"),
        ("hbfp8", "done"),
        ("hbfp4", "done"),
    ]
    resumed = runs[2]
    assert resumed.resumed_from_epoch == 1
    assert [e.epoch for e in resumed.epochs] == [0, 1]
    assert not (folder / "results.checkpoints" / f"run-{resumed.id}.pt").exists()


def test_a_store_from_before_alembic_reports_and_resumes(legacy: Path) -> None:
    with closing(sqlite3.connect(legacy)) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert "hbfp_runs" in tables
    assert VERSION_TABLE not in tables
    url = sqlite_url(legacy)

    # A reading command opens it, upgrading it on the way.
    result = CliRunner().invoke(app, ["report", "--db", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [(r["id"], r["sweep"], r["status"]) for r in runs] == [
        (1, "legacy", "done"),
        (2, "legacy", "interrupted"),
        (3, "legacy", "pending"),
    ]
    assert runs[0]["accuracy"] == 0.55
    assert runs[0]["schedule"][0]["formats"] == {"layers.1": "hbfp8", "layers.3": "hbfp8"}

    store = Store(url, create=False)
    assert (current_revision(store.engine), claim_index_exists(store.engine)) == (HEAD, True)
    assert schema_differences(store.engine) == []
    stored = store.runs("legacy", with_epochs=True)
    assert [(r.status, r.attempts, [e.epoch for e in r.epochs]) for r in stored] == [
        ("done", 1, [0, 1]),
        ("interrupted", 1, [0]),
        ("pending", 0, []),
    ]
    assert stored[0].final_acc == stored[0].epochs[-1].test_acc
    assert store.sweep("legacy").host == "legacy-host"

    # Resuming: the interrupted run is claimed first, and continues after its epoch 0.
    sweep_id = store.sweep_id("legacy")
    again = store.claim(sweep_id, "other-host:1")
    assert again is not None
    assert (again.id, again.status, again.attempts) == (2, "running", 2)
    store.start_attempt(again.lease, store.run(again.id).epochs, ENVIRONMENT)
    assert [e.epoch for e in store.run(again.id).epochs] == [0]
    assert [a.attempt for a in store.attempts([again.id])[again.id]] == [2]
    pending = store.claim(sweep_id, "other-host:1")
    assert pending is not None
    assert (pending.id, pending.attempts) == (3, 1)
    assert store.claim(sweep_id, "other-host:1") is None
    store.close()
    with closing(sqlite3.connect(legacy)) as raw:
        meta = dict(raw.execute("SELECT key, value FROM hbfp_meta"))
    assert meta == {
        "application": "hbfp-dse",
        "schema_version": str(SCHEMA_VERSION),
        "store_id": store.store_id,
    }


@pytest.mark.parametrize("revision", [None, BASELINE], ids=["before-alembic", "baseline"])
def test_an_older_store_is_upgraded_on_opening(store_url: str, revision: str | None) -> None:
    to_revision(store_url, revision)
    engine = create_engine(store_url)
    assert (current_revision(engine), claim_index_exists(engine)) == (revision, False)
    Store(store_url, create=False).close()
    assert (current_revision(engine), claim_index_exists(engine)) == (HEAD, True)
    assert schema_differences(engine) == []
    engine.dispose()


def _open_store(url: str) -> str | None:
    assert _START is not None
    _START.wait(timeout=120)
    store = Store(url, create=False)
    try:
        return current_revision(store.engine)
    finally:
        store.close()


_START: Any = None


def _init_opener(start: Any) -> None:
    global _START
    _START = start
    import hbfp_dse.experiments.store  # noqa: F401  (the slow import, before the barrier)


def test_processes_opening_an_older_store_at_once_upgrade_it_once(store_url: str) -> None:
    to_revision(store_url, None)
    context = multiprocessing.get_context("spawn")
    workers = 3
    start = context.Barrier(workers)
    with context.Pool(workers, initializer=_init_opener, initargs=(start,)) as pool:
        revisions_seen = pool.map(_open_store, [store_url] * workers, chunksize=1)
    assert revisions_seen == [HEAD] * workers
    engine = create_engine(store_url)
    with engine.connect() as connection:
        stamped = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    assert [row[0] for row in stamped] == [HEAD]
    assert claim_index_exists(engine)
    engine.dispose()


# Optuna's tables beside ours ----------------------------------------------------------


def _optimize(url: str) -> None:
    study = optuna.create_study(study_name="beside", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)


def _register(url: str) -> None:
    store = Store(url)
    store.register("beside", "name: beside\n", PROVENANCE, [one_run("r1")])
    store.close()


@pytest.mark.parametrize("optuna_first", [True, False], ids=["optuna-first", "store-first"])
def test_optuna_and_the_store_share_a_database(tmp_path: Path, optuna_first: bool) -> None:
    path = tmp_path / "shared.db"
    url = sqlite_url(path)
    first, second = (_optimize, _register) if optuna_first else (_register, _optimize)
    first(url)
    second(url)
    with closing(sqlite3.connect(path)) as raw:
        optuna_revisions = list(raw.execute("SELECT version_num FROM alembic_version"))
    store = Store(url, create=False)  # reopening touches neither version table
    assert [r.label for r in store.runs("beside")] == ["r1"]
    assert current_revision(store.engine) == HEAD
    assert schema_differences(store.engine) == []
    store.close()
    with closing(sqlite3.connect(path)) as raw:
        assert list(raw.execute("SELECT version_num FROM alembic_version")) == optuna_revisions
        assert list(raw.execute(f"SELECT version_num FROM {VERSION_TABLE}")) == [(HEAD,)]
    assert len(optuna_revisions) == 1
    assert optuna_revisions[0][0] != HEAD
    assert len(optuna.load_study(study_name="beside", storage=url).trials) == 2


# A database from a newer hbfp-dse ---------------------------------------------------------


def test_a_store_from_a_newer_hbfp_dse_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    url = sqlite_url(path)
    Store(url).close()
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999_future'")
    before = path.read_bytes()
    for create in (True, False):
        with pytest.raises(NewerDatabaseError, match="upgraded by a newer hbfp-dse") as err:
            Store(url, create=create)
        assert (err.value.revision, err.value.head) == ("9999_future", HEAD)
        assert "'9999_future' is unknown" in str(err.value)
    result = CliRunner().invoke(app, ["report", "--db", url])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert "upgraded by a newer hbfp-dse" in result.stderr
    assert "--db" in result.stderr  # the command line's hint
    assert path.read_bytes() == before
    # Refused before it asks for the write lock: another process holding it changes nothing.
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(NewerDatabaseError):
            Store(url, create=False)
        writer.execute("ROLLBACK")


# The revisions themselves -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new schema on the test server."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return
    server = request.getfixturevalue("pg_url")
    schema = f"hbfp_empty_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        options = {"options": f"-csearch_path={schema}"}
        yield make_url(server).update_query_dict(options).render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def test_the_revisions_build_the_tables_of_the_schema(empty_url: str) -> None:
    engine = create_engine(empty_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    assert current_revision(engine) == HEAD
    assert schema_differences(engine) == []
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert inspect(engine).get_table_names() == [VERSION_TABLE]
    engine.dispose()


def test_the_head_revision_opened_without_alembic_is_the_newest() -> None:
    assert revisions().get_current_head() == migrate.HEAD
