"""Shared fixtures: results stores on SQLite and on the PostgreSQL server of .ci/postgres.sh."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ENV = "HBFP_DSE_TEST_PG_URL"


@pytest.fixture
def pg_url() -> str:
    """The test PostgreSQL server's URL; skipped without one, except under CI, which must not
    skip the multi-worker tests silently."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f'{PG_ENV} is unset under CI: start the server with eval "$(.ci/postgres.sh)"')
        pytest.skip(f'{PG_ENV} is unset; eval "$(bash .ci/postgres.sh)" to run this test')
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A results store URL: a fresh SQLite file, or the shared PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sweep_name(store_url: str) -> Iterator[str]:
    """A sweep name no other test uses; the sweep (and its runs) is deleted afterwards, since
    tests share the PostgreSQL database."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    from sqlalchemy import delete

    from hbfp_dse.experiments.store import Store, Sweep, sqlite_path

    path = sqlite_path(store_url)
    if path is not None and not path.exists():
        return
    store = Store(store_url, create=False)
    try:
        with store.session() as session:
            session.execute(delete(Sweep).where(Sweep.name == name))
    finally:
        store.close()
