"""Store calls retried on transient database errors: with backoff, for a bounded time, and
never for errors that another try cannot cure."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

import hbfp_dse.experiments.store.retry as retry
from hbfp_dse.experiments.store import StoreUnavailableError
from hbfp_dse.experiments.store.retry import retried


class Flaky:
    """Fails ``failures`` times with ``error``, then answers."""

    safe_url = "sqlite:///flaky.db"

    def __init__(self, error: Exception, failures: int, retry_for: float = 60.0) -> None:
        self.error, self.failures, self.retry_for = error, failures, retry_for
        self.calls = 0

    @property
    def is_sqlite(self) -> bool:
        return True

    @retried
    def write(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "written"


def operational(message: str) -> OperationalError:
    return OperationalError("UPDATE ...", {}, sqlite3.OperationalError(message))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between tries, with time passing as they say."""
    waited: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(retry.time, "sleep", sleep)
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    return waited


def test_a_locked_database_is_retried_with_growing_waits(sleeps: list[float], caplog: Any) -> None:
    flaky = Flaky(operational("database is locked"), failures=4)
    assert flaky.write() == "written"
    assert flaky.calls == 5
    assert len(sleeps) == 4
    assert all(later > earlier for earlier, later in itertools.pairwise(sleeps))
    assert "unreachable (database is locked); retrying for up to 60 s" in caplog.text
    assert "reachable again after" in caplog.text


def test_a_database_away_for_longer_than_the_budget_is_unavailable(sleeps: list[float]) -> None:
    flaky = Flaky(operational("database is locked"), failures=10**6, retry_for=30.0)
    with pytest.raises(StoreUnavailableError, match=r"flaky.db unreachable for 30 s"):
        flaky.write()
    assert sum(sleeps) == pytest.approx(30.0)


@pytest.mark.parametrize(
    "error",
    [
        operational("no such table: hbfp_runs"),
        IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
    ],
    ids=["no-such-table", "integrity"],
)
def test_lasting_errors_are_not_retried(sleeps: list[float], error: Exception) -> None:
    flaky = Flaky(error, failures=1)
    with pytest.raises(type(error)):
        flaky.write()
    assert (flaky.calls, sleeps) == (1, [])
