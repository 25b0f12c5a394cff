"""The results store: sweeps, runs and epochs in any SQLAlchemy database, read and written as
the plain records of ``records.py``.

Workers claim runs atomically: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, a single
conditional ``UPDATE`` on SQLite (whose writers are serialised). A running run whose heartbeat
is older than ``stale_after`` seconds (by the database server's clock), or whose worker process
on this machine is provably gone, is reclaimed by the next worker. A claim is a ``Lease``
(worker and attempt): every later write of the run is conditional on it, so a worker whose run
was taken over writes nothing more. A worker's calls ride out a database outage (``retry.py``).
Only heartbeats keep the server's time; started and finished times are the workers' own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, aliased, joinedload, selectinload

from ...emulation.statistics import OperandStatistics
from ...errors import UserError
from ...training.results import EPOCH_COLUMNS, EpochRecord
from .errors import (
    LostRunError,
    NoDatabaseError,
    StoreError,
    UnknownRunError,
    UnknownSweepError,
)
from .liveness import host_prefix, known_dead
from .migrate import open_schema
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
from .retry import retried
from .schema import (
    AttemptRow,
    Base,
    EpochRow,
    OperandStatisticsRow,
    RunRow,
    SweepRow,
    utcnow,
)

DEFAULT_URL = "sqlite:///results.db"
ENV_URL = "HBFP_DSE_DB"
_RUN_COLUMNS = [f.name for f in fields(RunRecord) if f.name not in ("sweep", "epochs")]


def resolve_url(url: str | None) -> str:
    return url or os.environ.get(ENV_URL) or DEFAULT_URL


ENV_RETRY = "HBFP_DSE_DB_RETRY_S"
DEFAULT_RETRY_S = 300.0  # rides out a database restart or failover


def retry_seconds() -> float:
    """How long a worker retries an unreachable database: ``HBFP_DSE_DB_RETRY_S`` or 300."""
    text = os.environ.get(ENV_RETRY)
    if text is None:
        return DEFAULT_RETRY_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserError(f"{ENV_RETRY}={text!r}: give the seconds to retry, 0 or more")
    return seconds


T = TypeVar("T")
# Rows or values per statement: far below PostgreSQL's 65,535 bound parameters per statement.
CHUNK = 1000


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def redact_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, even where the URL does not parse."""
    return re.sub(r"(://[^:/@]*:)[^/?#]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class Store:
    """One results database, created or upgraded to the newest schema on opening.
    ``create=False`` refuses a database without results, and never creates a missing SQLite
    file, so that reading commands leave nothing behind. ``store_id`` is the database's
    lasting identity (a UUID), which its runs' checkpoints carry. The calls a worker makes
    are retried for ``retry_for`` seconds while the database is unreachable."""

    def __init__(
        self, url: str | None = None, *, create: bool = True, retry_for: float | None = None
    ) -> None:
        self.url = resolve_url(url)
        self.retry_for = retry_seconds() if retry_for is None else retry_for
        try:
            parsed = make_url(self.url)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            shown = redact_password(self.url)
            raise StoreError(
                shown, f"database URL {shown!r} is not a valid SQLAlchemy URL"
            ) from None
        if self.url.partition("://")[2].partition("/")[0].count("@") > 1:
            # The driver would take the rest of the password for the host, and echo it.
            raise StoreError(
                self.safe_url, f"database URL {self.safe_url!r}: write '@' in a password as %40"
            )
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            if not create:
                raise NoDatabaseError(self.url, path)
            if not path.parent.is_dir():
                raise StoreError(self.url, f"{self.url}: directory {path.parent} does not exist")
        self.engine = self._connect(parsed.get_backend_name())
        self.store_id = open_schema(self.engine, self.safe_url, create=create)
        self._use_wal()

    def _connect(self, backend: str) -> Engine:
        kwargs: dict[str, Any] = {}
        if backend == "sqlite":
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = create_engine(self.url, **kwargs)
        except (NoSuchModuleError, ImportError, ArgumentError) as err:
            raise StoreError(self.safe_url, f"cannot use database {self.safe_url}: {err}") from None
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    @property
    def safe_url(self) -> str:
        # Our own redaction: SQLAlchemy's reads an unencoded "@" in a password as the host's.
        return redact_password(self.url)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def _use_wal(self) -> None:
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # Sweeps and runs -------------------------------------------------------------------

    def register(
        self,
        name: str,
        spec_yaml: str,
        provenance: Provenance,
        runs: Sequence[NewRun],
        *,
        retry_failed: bool = False,
    ) -> tuple[int, list[int]]:
        """Create or update a sweep and add its runs not yet stored (by ``run_hash``), in one
        transaction; return the sweep id and the ids of all given runs in order."""
        columns = {"spec_yaml": spec_yaml, **asdict(provenance)}
        now = utcnow()
        with self.engine.begin() as connection:
            # Insert first: on SQLite a transaction that starts by reading cannot later write
            # while another process writes; the conflict is the normal case on a rerun.
            connection.execute(
                self._insert_ignore(SweepRow).values(name=name, created_at=now, **columns)
            )
            connection.execute(
                update(SweepRow).where(SweepRow.name == name).values(updated_at=now, **columns)
            )
            sweep_id = connection.execute(
                select(SweepRow.id).where(SweepRow.name == name)
            ).scalar_one()
            self._insert_runs(connection, sweep_id, runs)
            if retry_failed:
                connection.execute(
                    update(RunRow)
                    .where(RunRow.sweep_id == sweep_id, RunRow.status == "failed")
                    .values(status="pending", error=None, faults=0)
                )
            ids = self._run_ids(connection, sweep_id, runs)
        return sweep_id, ids

    @retried
    def add_runs(self, sweep_id: int, runs: Sequence[NewRun]) -> list[int]:
        """Add runs not yet in the sweep; return the ids of all given runs in order."""
        with self.engine.begin() as connection:
            self._insert_runs(connection, sweep_id, runs)
            return self._run_ids(connection, sweep_id, runs)

    def _insert_runs(self, connection: Connection, sweep_id: int, runs: Sequence[NewRun]) -> None:
        now = utcnow()
        stored = {"sweep_id": sweep_id, "status": "pending", "attempts": 0, "created_at": now}
        for chunk in chunks(runs):
            connection.execute(
                self._insert_ignore(RunRow), [{**stored, **asdict(run)} for run in chunk]
            )

    @staticmethod
    def _run_ids(connection: Connection, sweep_id: int, runs: Sequence[NewRun]) -> list[int]:
        hashes = [run.run_hash for run in runs]
        query = select(RunRow.run_hash, RunRow.id).where(RunRow.sweep_id == sweep_id)
        if len(hashes) > CHUNK:
            # All of the sweep in one scan: the rows were just inserted, in this transaction,
            # so the planner knows nothing of them, and chunked IN lists scanned the table
            # once per chunk (2 s each at 70,000 runs on PostgreSQL).
            ids = {run_hash: run_id for run_hash, run_id in connection.execute(query)}
        else:
            found = connection.execute(query.where(RunRow.run_hash.in_(hashes)))
            ids = {run_hash: run_id for run_hash, run_id in found}
        return [ids[h] for h in hashes]

    @retried
    def adopt_trial(self, run_id: int, trial_number: int, target: float) -> None:
        """Mark a stored run (a grid run, say) as the result of a search trial."""
        with self.engine.begin() as connection:
            connection.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.trial_number.is_(None))
                .values(trial_number=trial_number, search_target=target)
            )

    def _insert_ignore(self, model: type[Base]) -> Any:
        insert = sqlite_insert if self.is_sqlite else postgresql_insert
        return insert(model).on_conflict_do_nothing()

    def sweep_id(self, name: str) -> int:
        with self.engine.connect() as connection:
            found = connection.scalar(select(SweepRow.id).where(SweepRow.name == name))
        if found is None:
            raise UnknownSweepError(self.safe_url, name, self.sweep_names())
        return found

    def sweep_names(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.scalars(select(SweepRow.name).order_by(SweepRow.id)))

    def sweep(self, name: str) -> SweepRecord:
        with self._session() as session:
            row = session.scalar(select(SweepRow).where(SweepRow.name == name))
            if row is None:
                raise UnknownSweepError(self.safe_url, name, self.sweep_names())
            return SweepRecord(**{f.name: getattr(row, f.name) for f in fields(SweepRecord)})

    @retried
    def claim(
        self,
        sweep_id: int,
        worker: str,
        *,
        stale_after: float = 120.0,
        run_ids: Sequence[int] | None = None,
        exclude: Collection[int] = (),
    ) -> RunRecord | None:
        """Atomically take the next pending, interrupted or abandoned run (without its
        epochs) other than those of ``exclude``, or None. Its ``lease`` is what every later
        write of it must show."""
        self._release_abandoned(sweep_id, worker)
        candidate = aliased(RunRow)
        claimable = (candidate.sweep_id == sweep_id) & (
            candidate.status.in_(("pending", "interrupted"))
            | (
                (candidate.status == "running")
                & (candidate.heartbeat_at < self._clock(stale_after))
            )
        )
        if run_ids is not None:
            claimable &= candidate.id.in_(list(run_ids))
        if exclude:
            claimable &= candidate.id.not_in(list(exclude))
        first = select(candidate.id).where(claimable).order_by(candidate.id).limit(1)
        claimed = {
            "status": "running",
            "worker": worker,
            "heartbeat_at": self._clock(),
            "started_at": utcnow(),
            "attempts": RunRow.attempts + 1,
            "error": None,
        }
        with self._session() as session:
            if self.is_sqlite:
                # One UPDATE is one atomic write on SQLite, whose writers are serialised.
                statement = update(RunRow).where(RunRow.id == first.scalar_subquery())
            else:
                run_id = session.scalar(first.with_for_update(skip_locked=True))
                if run_id is None:
                    return None
                statement = update(RunRow).where(RunRow.id == run_id)
            run_id = session.execute(statement.values(**claimed).returning(RunRow.id)).scalar()
            if run_id is None:
                return None
            row = session.get_one(RunRow, run_id, options=[joinedload(RunRow.sweep)])
            return _run_record(row, with_epochs=False)

    def _clock(self, seconds_ago: float = 0.0) -> ColumnElement[datetime]:
        """Now, less ``seconds_ago``, by the database server's clock (naive UTC) on
        PostgreSQL, so that workers whose clocks disagree still agree on which heartbeat is
        stale. A SQLite file is local: this host's clock."""
        if self.is_sqlite:
            return literal(utcnow() - timedelta(seconds=seconds_ago), DateTime())
        now = func.timezone("UTC", func.statement_timestamp(), type_=DateTime())
        return now - timedelta(seconds=seconds_ago) if seconds_ago else now

    def _release_abandoned(self, sweep_id: int, worker: str) -> None:
        """Runs this worker holds (a claim whose answer was lost with its connection) and
        runs of processes on this machine that are provably gone become interrupted."""
        query = select(RunRow.id, RunRow.worker, RunRow.attempts).where(
            RunRow.sweep_id == sweep_id,
            RunRow.status == "running",
            RunRow.worker.startswith(host_prefix(), autoescape=True),
        )
        with self.engine.connect() as connection:
            held = connection.execute(query).all()
        for run_id, holder, attempt in held:
            if holder == worker or known_dead(holder):
                self._interrupt(Lease(run_id, holder, attempt))

    @staticmethod
    def _held(lease: Lease, statuses: Sequence[str] = ("running",)) -> ColumnElement[bool]:
        return (
            (RunRow.id == lease.run_id)
            & (RunRow.worker == lease.worker)
            & (RunRow.attempts == lease.attempt)
            & RunRow.status.in_(statuses)
        )

    def _hold(self, connection: Connection, lease: Lease, **values: Any) -> None:
        """Refresh the run's heartbeat (setting ``values`` too) while ``lease`` holds it, else
        raise :class:`LostRunError`. First in its transaction, it also locks the run's row,
        so that no takeover slips in before the transaction's other writes commit."""
        statement = update(RunRow).where(self._held(lease))
        if not connection.execute(statement.values(heartbeat_at=self._clock(), **values)).rowcount:
            raise _lost(connection, lease)

    @retried
    def hold(self, lease: Lease) -> None:
        """Refresh the claim; :class:`LostRunError` when the run is no longer the lease's."""
        with self.engine.begin() as connection:
            self._hold(connection, lease)

    @retried
    def start_attempt(
        self, lease: Lease, history: Sequence[EpochRecord], environment: Environment
    ) -> None:
        """Begin the lease's attempt where its checkpoint left the run: the stored epochs
        become exactly the checkpoint's ``history`` (rows a crash or an outage kept from the
        store are restored, later ones forgotten), and the attempt's environment is kept."""
        with self.engine.begin() as connection:
            self._hold(
                connection,
                lease,
                device=environment.device,
                resumed_from_epoch=len(history) or None,
            )
            connection.execute(delete(EpochRow).where(EpochRow.run_id == lease.run_id))
            connection.execute(
                delete(OperandStatisticsRow).where(OperandStatisticsRow.run_id == lease.run_id)
            )
            for chunk in chunks(history):
                rows = [{"run_id": lease.run_id, **record.columns()} for record in chunk]
                connection.execute(insert(EpochRow), rows)
            for record in history:
                _insert_statistics(connection, lease.run_id, record)
            connection.execute(
                self._insert_ignore(AttemptRow).values(
                    run_id=lease.run_id,
                    attempt=lease.attempt,
                    worker=lease.worker,
                    start_epoch=len(history),
                    started_at=utcnow(),
                    **asdict(environment),
                )
            )

    @retried
    def record_epoch(self, lease: Lease, record: EpochRecord) -> None:
        with self.engine.begin() as connection:
            self._hold(connection, lease)
            for table in (EpochRow, OperandStatisticsRow):
                connection.execute(
                    delete(table).where(table.run_id == lease.run_id, table.epoch == record.epoch)
                )
            connection.execute(insert(EpochRow).values(run_id=lease.run_id, **record.columns()))
            _insert_statistics(connection, lease.run_id, record)

    @retried
    def finish(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        device: str | None = None,
        final_acc: float | None = None,
        best_acc: float | None = None,
        final_val_acc: float | None = None,
        error: str | None = None,
    ) -> None:
        """Record a run's outcome; the device stays the one ``start_attempt`` noted unless
        given. :class:`LostRunError` when the run is no longer the lease's (a repeat of the
        same outcome is not an error: its first commit may have been lost in transit)."""
        outcome: dict[str, Any] = {
            "status": status,
            "finished_at": utcnow(),
            "final_acc": final_acc,
            "best_acc": best_acc,
            "final_val_acc": final_val_acc,
            "error": error,
        }
        if device is not None:
            outcome["device"] = device
        held = self._held(lease, ("running", status))
        with self.engine.begin() as connection:
            if not connection.execute(update(RunRow).where(held).values(**outcome)).rowcount:
                raise _lost(connection, lease)

    def _interrupt(self, lease: Lease, fault: str | None = None) -> bool:
        """Mark the run interrupted (it is claimed again) if the lease still holds it; a
        ``fault`` of the machine is kept as its error and counted."""
        values: dict[str, Any] = {"status": "interrupted", "error": fault}
        if fault is not None:
            values["faults"] = RunRow.faults + 1
        with self.engine.begin() as connection:
            marked = update(RunRow).where(self._held(lease)).values(**values)
            return bool(connection.execute(marked).rowcount)

    interrupt = retried(_interrupt)

    def interrupt_now(self, lease: Lease) -> bool:
        """One try, for a worker stopping at Ctrl-C, which must not wait out an outage: a run
        it cannot mark is taken over once its heartbeat is stale."""
        try:
            return self._interrupt(lease)
        except DBAPIError:
            return False

    def attempts(self, run_ids: Sequence[int]) -> dict[int, list[AttemptRecord]]:
        """The attempts of the given runs, in order, by run id."""
        found: dict[int, list[AttemptRecord]] = {run_id: [] for run_id in run_ids}
        names = [f.name for f in fields(AttemptRecord)]
        with self.engine.connect() as connection:
            for chunk in chunks(run_ids):
                query = (
                    select(AttemptRow)
                    .where(AttemptRow.run_id.in_(chunk))
                    .order_by(AttemptRow.run_id, AttemptRow.attempt)
                )
                for row in connection.execute(query).mappings():
                    record = AttemptRecord(**{name: row[name] for name in names})
                    found[record.run_id].append(record)
        return found

    # Reading ---------------------------------------------------------------------------

    def runs(self, sweep: str | None = None, *, with_epochs: bool = False) -> list[RunRecord]:
        query = select(RunRow).options(joinedload(RunRow.sweep)).order_by(RunRow.id)
        if with_epochs:
            query = query.options(selectinload(RunRow.epochs))
        if sweep is not None:
            query = query.where(RunRow.sweep_id == self.sweep_id(sweep))
        with self._session() as session:
            return [_run_record(row, with_epochs) for row in session.scalars(query)]

    @retried
    def operand_statistics(
        self, run_ids: Sequence[int]
    ) -> dict[int, list[tuple[int, OperandStatistics]]]:
        """Every stored ``(epoch, statistics)`` of the runs, by run, in the order of epoch,
        layer name and operand."""
        found: dict[int, list[tuple[int, OperandStatistics]]] = {i: [] for i in run_ids}
        names = [f.name for f in fields(OperandStatistics)]
        table = OperandStatisticsRow
        with self.engine.connect() as connection:
            for chunk in chunks(run_ids):
                query = (
                    select(table)
                    .where(table.run_id.in_(chunk))
                    .order_by(table.run_id, table.epoch, table.layer, table.operand)
                )
                for row in connection.execute(query).mappings():
                    statistics = OperandStatistics(**{name: row[name] for name in names})
                    found[row["run_id"]].append((row["epoch"], statistics))
        return found

    @retried
    def run(self, run_id: int) -> RunRecord:
        """A run with its epochs."""
        options = [joinedload(RunRow.sweep), selectinload(RunRow.epochs)]
        with self._session() as session:
            row = session.get(RunRow, run_id, options=options)
            if row is None:
                raise UnknownRunError(self.safe_url, run_id)
            return _run_record(row, with_epochs=True)

    @retried
    def status_counts(self, sweep_id: int) -> dict[str, int]:
        query = (
            select(RunRow.status, func.count())
            .where(RunRow.sweep_id == sweep_id)
            .group_by(RunRow.status)
        )
        with self.engine.connect() as connection:
            return dict(connection.execute(query).all())

    @retried
    def count_finished(self, sweep_id: int, run_ids: Sequence[int] | None = None) -> int:
        """The sweep's runs (or those of ``run_ids``) that are never claimed again (see
        ``FINISHED_STATUSES``)."""
        query = select(func.count()).where(
            RunRow.sweep_id == sweep_id, RunRow.status.in_(sorted(FINISHED_STATUSES))
        )
        with self.engine.connect() as connection:
            if run_ids is None:
                return connection.execute(query).scalar_one()
            return sum(
                connection.execute(query.where(RunRow.id.in_(chunk))).scalar_one()
                for chunk in chunks(run_ids)
            )


def _insert_statistics(connection: Connection, run_id: int, record: EpochRecord) -> None:
    rows = [{"run_id": run_id, "epoch": record.epoch, **asdict(s)} for s in record.statistics]
    for chunk in chunks(rows):
        connection.execute(insert(OperandStatisticsRow), chunk)


def _lost(connection: Connection, lease: Lease) -> LostRunError:
    holder = connection.scalar(select(RunRow.worker).where(RunRow.id == lease.run_id))
    return LostRunError(
        lease.run_id, lease.worker, lease.attempt, None if holder == lease.worker else holder
    )


def _run_record(row: RunRow, with_epochs: bool) -> RunRecord:
    """Built while ``row``'s session is open; nothing of the session leaves with it."""
    epochs = tuple(
        EpochRecord(**{name: getattr(e, name) for name in EPOCH_COLUMNS})
        for e in (row.epochs if with_epochs else ())
    )
    columns = {name: getattr(row, name) for name in _RUN_COLUMNS}
    return RunRecord(**columns, sweep=row.sweep.name, epochs=epochs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Per connection, and writing nothing: WAL (a property of the file) is set by Store only
    # once the database is known to be ours, never on someone else's.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
