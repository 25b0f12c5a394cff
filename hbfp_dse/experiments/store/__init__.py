"""The results store: ``Store`` reads and writes the records of ``records.py``; the tables
are in ``schema.py`` and their Alembic revisions in ``migrations/``."""

from .errors import (
    ForeignDatabaseError,
    NewerDatabaseError,
    NoDatabaseError,
    NoResultsError,
    SchemaVersionError,
    StoreError,
    UnknownRunError,
    UnknownSweepError,
)
from .records import (
    FINISHED_STATUSES,
    NewRun,
    Provenance,
    RunRecord,
    RunStatus,
    SweepRecord,
)
from .schema import utcnow
from .store import DEFAULT_URL, ENV_URL, Store, resolve_url, sqlite_path, worker_name

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "FINISHED_STATUSES",
    "ForeignDatabaseError",
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
    "SweepRecord",
    "UnknownRunError",
    "UnknownSweepError",
    "resolve_url",
    "sqlite_path",
    "utcnow",
    "worker_name",
]
