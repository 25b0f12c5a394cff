"""Shared fixtures: results stores on SQLite and on PostgreSQL.

The PostgreSQL tests use the server that ``HBFP_DSE_TEST_PG_URL`` names, stopped and started
by the outage tests with the command in ``HBFP_DSE_TEST_PG_CTL``: under CI (env ``CI`` set),
the server of ``.ci/postgres.sh`` on 127.0.0.1:5432, and there they must not skip. Without
``HBFP_DSE_TEST_PG_URL``, outside CI, they use a throwaway cluster of this test session's own
(tests/pg_cluster.py: a temporary directory, a free port, removed at the end), from the server
programs that ``make test`` as root installs; they skip where there are none.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pg_cluster
import pytest

PG_ENV = "HBFP_DSE_TEST_PG_URL"
CTL_ENV = "HBFP_DSE_TEST_PG_CTL"


@dataclass(frozen=True)
class PgServer:
    url: str
    ctl: list[str] | None  # the command that stops or starts it, with "stop" or "start" added


def _unavailable(message: str) -> NoReturn:
    """Skips a PostgreSQL test, except under CI, which must not skip them silently."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def eager_quantizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that train tiny runs: compiling the quantizer takes longer than they do, and
    the compiled kernels have tests of their own."""
    monkeypatch.setenv("HBFP_DSE_COMPILE", "0")


@pytest.fixture(scope="session", autouse=True)
def _model_shapes_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The counts ``hbfp-dse cost`` caches go to this session's directory (commands run as
    subprocesses too), not the user's cache."""
    saved = os.environ.get("HBFP_DSE_CACHE")
    os.environ["HBFP_DSE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        del os.environ["HBFP_DSE_CACHE"]
    else:
        os.environ["HBFP_DSE_CACHE"] = saved


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[PgServer]:
    """The test PostgreSQL server: HBFP_DSE_TEST_PG_URL's, or else, outside CI, a throwaway
    cluster started at the first test that needs it and removed at the end of the session."""
    url = os.environ.get(PG_ENV)
    if url:
        ctl = os.environ.get(CTL_ENV)
        yield PgServer(url, shlex.split(ctl) if ctl else None)
        return
    if os.environ.get("CI"):
        _unavailable(f'{PG_ENV} is unset; eval "$(bash .ci/postgres.sh)" to run this test')
    bindir = pg_cluster.find_bindir()
    if bindir is None:
        _unavailable(
            f"no PostgreSQL server programs (initdb, pg_ctl, postgres) for a throwaway cluster: "
            f"install Debian's postgresql (make test as root does), or set {PG_ENV}"
        )
    with pg_cluster.throwaway(bindir) as cluster:
        yield PgServer(cluster.url, cluster.ctl)


@pytest.fixture(scope="session")
def _pg_schema_url(_pg_server: PgServer) -> Iterator[str]:
    """The test server's URL, pointed at a schema of this test session's own: tables that an
    older hbfp-dse or another test session left in the database cannot get in the way."""
    url = _pg_server.url
    from sqlalchemy import create_engine, make_url, text

    schema = f"hbfp_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, pool_pre_ping=True)  # the outage tests restart the server
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture
def pg_url(_pg_schema_url: str) -> str:
    """The test PostgreSQL server; skipped without one, except under CI (env CI set), which
    must not skip the multi-worker tests silently."""
    return _pg_schema_url


@pytest.fixture
def pg_ctl(_pg_server: PgServer) -> list[str]:
    """The command that stops or starts the test server, with "stop" or "start" added."""
    if _pg_server.ctl is None:
        _unavailable(f"{CTL_ENV} is unset; it tells how to stop and start {PG_ENV}'s server")
    return _pg_server.ctl


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A results store URL: a fresh SQLite file, or this session's PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sweep_name(store_url: str) -> Iterator[str]:
    """A sweep name no other test uses; sweeps whose names start with it (and their runs) are
    deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    from sqlalchemy import delete

    from hbfp_dse.experiments.store import Store, sqlite_path
    from hbfp_dse.experiments.store.schema import SweepRow

    path = sqlite_path(store_url)
    if path is not None and not path.exists():
        return
    store = Store(store_url, create=False)
    try:
        with store.engine.begin() as connection:
            connection.execute(delete(SweepRow).where(SweepRow.name.startswith(name)))
    finally:
        store.close()
