"""Riding out a database that goes away for a while (a restart, a failover, a SQLite file
locked by another writer): the worker's store calls are retried with backoff."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .errors import StoreUnavailableError

logger = logging.getLogger("hbfp_dse.store")

P = ParamSpec("P")
R = TypeVar("R")

# SQLite raises OperationalError for lasting faults too (no such table); these pass.
_TRANSIENT_SQLITE = ("locked", "busy", "unable to open database file", "disk i/o error")


def is_transient(err: DBAPIError, sqlite: bool) -> bool:
    if err.connection_invalidated:
        return True
    if sqlite:
        text = str(err.orig).lower()
        return isinstance(err, OperationalError) and any(m in text for m in _TRANSIENT_SQLITE)
    return isinstance(err, (OperationalError, InterfaceError))


class Retrying(Protocol):
    """What a retried method's object offers: where it writes, and for how long to retry."""

    safe_url: str
    retry_for: float

    @property
    def is_sqlite(self) -> bool: ...


def retried(method: Callable[Concatenate[Retrying, P], R]) -> Callable[Concatenate[Retrying, P], R]:
    """Retry the method on transient database errors, with exponential backoff (0.25 s to
    8 s), for ``self.retry_for`` seconds; then raise :class:`StoreUnavailableError`. Each
    method is one transaction, so a retry repeats it whole; they are written to be safe to
    repeat, since a commit whose answer was lost may have happened."""

    @functools.wraps(method)
    def wrapper(self: Retrying, /, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()
        delay = 0.25
        failing = False
        while True:
            try:
                result = method(self, *args, **kwargs)
            except DBAPIError as err:
                if not is_transient(err, self.is_sqlite):
                    raise
                waited = time.monotonic() - started
                if waited >= self.retry_for:
                    raise StoreUnavailableError(self.safe_url, waited, err.orig) from err
                if not failing:
                    logger.warning(
                        "database %s unreachable (%s); retrying for up to %.0f s",
                        self.safe_url,
                        str(err.orig).strip().splitlines()[0] if str(err.orig).strip() else err,
                        self.retry_for,
                    )
                    failing = True
                time.sleep(min(delay * random.uniform(0.75, 1.25), self.retry_for - waited))
                delay = min(delay * 2, 8.0)
                continue
            if failing:
                logger.warning(
                    "database %s reachable again after %.0f s",
                    self.safe_url,
                    time.monotonic() - started,
                )
            return result

    return wrapper
