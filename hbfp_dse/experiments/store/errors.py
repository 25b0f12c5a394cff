"""Why a database cannot serve as the results store, as data: the messages name no command
line flags, so that the command line can add its own hint by type."""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError


class StoreError(UserError):
    """A database that cannot be used as the results store, named by ``url``."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class StoreUnavailableError(StoreError):
    """The database stayed unreachable through every retry."""

    def __init__(self, url: str, seconds: float, cause: Exception) -> None:
        super().__init__(url, f"database {url} unreachable for {seconds:.0f} s: {cause}")
        self.seconds, self.cause = seconds, cause


class LostRunError(Exception):
    """A write of a run its worker no longer holds: another worker took it over (or it was
    marked interrupted). The write was not made."""

    def __init__(self, run_id: int, worker: str, attempt: int, holder: str | None) -> None:
        held = f"now held by {holder}" if holder else "no longer held by it"
        super().__init__(f"run {run_id} was taken from worker {worker} (attempt {attempt}): {held}")
        self.run_id, self.worker, self.attempt, self.holder = run_id, worker, attempt, holder


class NoDatabaseError(StoreError):
    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url, f"no results database at {path}")
        self.path = path


class NoResultsError(StoreError):
    def __init__(self, url: str) -> None:
        super().__init__(url, f"{url} holds no hbfp-dse results yet")


class ForeignDatabaseError(StoreError):
    """Another application's database; ``table`` is one of its tables, None when its
    ``hbfp_meta`` names another application."""

    def __init__(self, url: str, table: str | None) -> None:
        such_as = f" (it holds tables such as {table!r})" if table else ""
        super().__init__(url, f"{url} is not an hbfp-dse results database{such_as}")
        self.table = table


class SchemaVersionError(StoreError):
    def __init__(self, url: str, found: int, supported: int) -> None:
        super().__init__(
            url,
            f"{url} holds results in schema version {found}; this hbfp-dse reads version "
            f"{supported}: open it with the matching hbfp-dse release",
        )
        self.found, self.supported = found, supported


class NewerDatabaseError(StoreError):
    """Migrated by a newer hbfp-dse: its revision is not among ours."""

    def __init__(self, url: str, revision: str, head: str) -> None:
        super().__init__(
            url,
            f"{url} was upgraded by a newer hbfp-dse: its schema revision {revision!r} is "
            f"unknown to this one (which ends at {head!r}); upgrade hbfp-dse to read it",
        )
        self.revision, self.head = revision, head


class UnknownSweepError(UserError):
    def __init__(self, url: str, name: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none yet"
        super().__init__(f"no sweep named {name!r} in {url} (sweeps: {listed})")
        self.url, self.name, self.known = url, name, known


class UnknownRunError(UserError):
    def __init__(self, url: str, run_id: int) -> None:
        super().__init__(f"no run {run_id} in {url}")
        self.url, self.run_id = url, run_id
