"""Shared fixtures: results stores on SQLite and on the PostgreSQL server of .ci/postgres.sh."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ENV = "HBFP_DSE_TEST_PG_URL"


@pytest.fixture
def eager_quantizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that train tiny runs: compiling the quantizer takes longer than they do, and
    the compiled kernels have tests of their own."""
    monkeypatch.setenv("HBFP_DSE_COMPILE", "0")


@pytest.fixture(scope="session")
def _pg_schema_url() -> Iterator[str | None]:
    """The test server's URL, pointed at a schema of this test session's own: tables that an
    older hbfp-dse or another test session left in the database cannot get in the way."""
    url = os.environ.get(PG_ENV)
    if not url:
        yield None
        return
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
def pg_url(_pg_schema_url: str | None) -> str:
    """The test PostgreSQL server; skipped without one, except under CI (env CI set), which
    must not skip the multi-worker tests silently."""
    if _pg_schema_url is None:
        message = f'{PG_ENV} is unset; eval "$(bash .ci/postgres.sh)" to run this test'
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return _pg_schema_url


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
