"""The results store: ``Store`` reads and writes the records of ``records.py``; the tables
are in ``schema.py`` and their Alembic revisions in ``migrations/``."""

from .errors import (
    ForeignDatabaseError,
    LostRunError,
    NewerDatabaseError,
    NoDatabaseError,
    NoResultsError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
    UnknownRunError,
    UnknownSweepError,
)
from .liveness import worker_name
from .records import (
    FINISHED_STATUSES,
    AttemptRecord,
    Environment,
    Lease,
    NewRun,
    Provenance,
    RunRecord,
    RunStatus,
    SweepRecord,
)
from .schema import utcnow
from .store import DEFAULT_URL, ENV_URL, Store, resolve_url, sqlite_path

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "FINISHED_STATUSES",
    "AttemptRecord",
    "Environment",
    "ForeignDatabaseError",
    "Lease",
    "LostRunError",
    "NewRun",
    "NewerDatabaseError",
    "NoDatabaseError",
    "NoResultsError",
    "Provenance",
    "RunRecord",
    "RunStatus",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "SweepRecord",
    "UnknownRunError",
    "UnknownSweepError",
    "resolve_url",
    "sqlite_path",
    "utcnow",
    "worker_name",
]
