"""The results store: sweeps, runs and epochs in any SQLAlchemy database.

Tables carry the ``hbfp_`` prefix so that Optuna's tables can live in the same database.
Workers claim runs atomically: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, a single
conditional ``UPDATE`` on SQLite (whose writers are serialised). A running run whose heartbeat
is older than ``stale_after`` seconds, or whose worker process on this host is gone, is
reclaimed by the next worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    mapped_column,
    relationship,
)

from ..errors import UserError
from ..training.trainer import EpochRecord

SCHEMA_VERSION = 2  # 2: search_target moved from hbfp_sweeps to hbfp_runs
PREFIX = "hbfp_"
DEFAULT_URL = "sqlite:///results.db"
ENV_URL = "HBFP_DSE_DB"
# ``pruned``: a search trial stopped early because it could no longer reach the target.
RunStatus = Literal["pending", "running", "done", "failed", "diverged", "interrupted", "pruned"]
FINISHED: tuple[RunStatus, ...] = ("done", "failed", "diverged", "pruned")
# Optuna's own tables, which may share the database with ours.
OPTUNA_TABLES = frozenset(
    {
        "studies",
        "study_directions",
        "study_user_attributes",
        "study_system_attributes",
        "trials",
        "trial_params",
        "trial_values",
        "trial_intermediate_values",
        "trial_user_attributes",
        "trial_system_attributes",
        "trial_heartbeats",
        "version_info",
        "alembic_version",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = PREFIX + "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Sweep(Base):
    __tablename__ = PREFIX + "sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    python_version: Mapped[str] = mapped_column(String(32))
    torch_version: Mapped[str] = mapped_column(String(64))
    hbfp_version: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    runs: Mapped[list[Run]] = relationship(back_populates="sweep", cascade="all, delete-orphan")


class Run(Base):
    __tablename__ = PREFIX + "runs"
    __table_args__ = (UniqueConstraint("sweep_id", "run_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey(PREFIX + "sweeps.id", ondelete="CASCADE"))
    run_hash: Mapped[str] = mapped_column(String(32))
    config_id: Mapped[str] = mapped_column(String(32), index=True)
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # baseline, grid or search
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer)  # set by ``hbfp-dse search``
    search_target: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    final_acc: Mapped[float | None] = mapped_column(Float)
    best_acc: Mapped[float | None] = mapped_column(Float)
    density: Mapped[float | None] = mapped_column(Float)
    density_vs_bf16: Mapped[float | None] = mapped_column(Float)
    mac_share: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    schedule: Mapped[list[Any] | None] = mapped_column(JSON)  # resolved formats per epoch
    error: Mapped[str | None] = mapped_column(Text)
    sweep: Mapped[Sweep] = relationship(back_populates="runs")
    epochs: Mapped[list[Epoch]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Epoch.epoch"
    )


class Epoch(Base):
    __tablename__ = PREFIX + "epochs"
    run_id: Mapped[int] = mapped_column(
        ForeignKey(PREFIX + "runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Float)
    train_acc: Mapped[float] = mapped_column(Float)
    test_loss: Mapped[float] = mapped_column(Float)
    test_acc: Mapped[float] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    images_per_s: Mapped[float] = mapped_column(Float)
    formats: Mapped[dict[str, Any]] = mapped_column(JSON)
    run: Mapped[Run] = relationship(back_populates="epochs")


def resolve_url(url: str | None) -> str:
    return url or os.environ.get(ENV_URL) or DEFAULT_URL


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Store:
    """One results database. ``create=False`` refuses to create a missing SQLite file, so
    that reading commands never leave an empty database behind."""

    def __init__(self, url: str | None = None, *, create: bool = True) -> None:
        self.url = resolve_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise UserError(f"database URL {self.url!r} is not a valid SQLAlchemy URL") from None
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            if not create:
                raise UserError(
                    f"no results database at {path}; run 'hbfp-dse sweep FILE' first "
                    f"or point --db / {ENV_URL} at one"
                )
            if not path.parent.is_dir():
                raise UserError(f"{self.url}: directory {path.parent} does not exist")
        self.engine = self._connect(parsed.get_backend_name())
        self._check_or_create(create)

    def _connect(self, backend: str) -> Engine:
        kwargs: dict[str, Any] = {}
        if backend == "sqlite":
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = create_engine(self.url, **kwargs)
        except (NoSuchModuleError, ImportError, ArgumentError) as err:
            raise UserError(f"cannot use database {self.safe_url}: {err}") from None
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def _check_or_create(self, create: bool) -> None:
        try:
            tables = set(inspect(self.engine).get_table_names())
        except DBAPIError as err:
            raise UserError(f"cannot open database {self.safe_url}: {_first_line(err)}") from None
        meta_table = Meta.__tablename__
        if meta_table in tables:
            with Session(self.engine) as session:
                values = {m.key: m.value for m in session.scalars(select(Meta))}
            if values.get("application") != "hbfp-dse":
                raise UserError(f"{self.safe_url} is not an hbfp-dse results database")
            version = int(values.get("schema_version", "0"))
            if version != SCHEMA_VERSION:
                raise UserError(
                    f"{self.safe_url} holds results in schema version {version}; this "
                    f"hbfp-dse reads version {SCHEMA_VERSION}: use a new --db or the "
                    "matching hbfp-dse release"
                )
            self._use_wal()
            return
        foreign = tables - OPTUNA_TABLES
        if foreign:
            raise UserError(
                f"{self.safe_url} is not an hbfp-dse results database (it holds tables such "
                f"as {sorted(foreign)[0]!r}); point --db at another database"
            )
        if not create:
            raise UserError(f"{self.safe_url} holds no hbfp-dse results yet")
        try:
            self._use_wal()
            Base.metadata.create_all(self.engine)
            with Session(self.engine) as session, session.begin():
                session.merge(Meta(key="application", value="hbfp-dse"))
                session.merge(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        except SQLAlchemyError as err:
            raise UserError(
                f"cannot create tables in {self.safe_url}: {_first_line(err)}"
            ) from None

    def _use_wal(self) -> None:
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # Sweeps and runs -------------------------------------------------------------------

    def register(
        self,
        name: str,
        spec_yaml: str,
        provenance: Mapping[str, Any],
        runs: Sequence[Mapping[str, Any]],
        *,
        retry_failed: bool = False,
    ) -> tuple[int, list[int]]:
        """Create or update a sweep and add its runs not yet stored (by ``run_hash``), in one
        transaction; return the sweep id and the ids of all given runs in order."""
        fields = {"spec_yaml": spec_yaml, **provenance}
        now = utcnow()
        with self.session() as session:
            connection = session.connection()
            # Insert first: on SQLite a transaction that starts by reading cannot later write
            # while another process writes; the conflict is the normal case on a rerun.
            connection.execute(
                self._insert_ignore(Sweep).values(name=name, created_at=now, **fields)
            )
            connection.execute(
                update(Sweep).where(Sweep.name == name).values(updated_at=now, **fields)
            )
            sweep_id = connection.execute(select(Sweep.id).where(Sweep.name == name)).scalar_one()
            self._insert_runs(connection, sweep_id, runs)
            if retry_failed:
                connection.execute(
                    update(Run)
                    .where(Run.sweep_id == sweep_id, Run.status == "failed")
                    .values(status="pending", error=None)
                )
            ids = self._run_ids(connection, sweep_id, runs)
        return sweep_id, ids

    def add_runs(self, sweep_id: int, runs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Add runs not yet in the sweep; return the ids of all given runs in order."""
        with self.session() as session:
            connection = session.connection()
            self._insert_runs(connection, sweep_id, runs)
            return self._run_ids(connection, sweep_id, runs)

    def _insert_runs(
        self, connection: Connection, sweep_id: int, runs: Sequence[Mapping[str, Any]]
    ) -> None:
        if runs:
            defaults = {"sweep_id": sweep_id, "status": "pending", "attempts": 0}
            connection.execute(
                self._insert_ignore(Run),
                [{**defaults, "created_at": utcnow(), **run} for run in runs],
            )

    @staticmethod
    def _run_ids(
        connection: Connection, sweep_id: int, runs: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        hashes = [run["run_hash"] for run in runs]
        ids = dict(
            connection.execute(
                select(Run.run_hash, Run.id).where(
                    Run.sweep_id == sweep_id, Run.run_hash.in_(hashes)
                )
            ).all()
        )
        return [ids[h] for h in hashes]

    def adopt_trial(self, run_id: int, trial_number: int, target: float) -> None:
        """Mark a stored run (a grid run, say) as the result of a search trial."""
        with self.session() as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id, Run.trial_number.is_(None))
                .values(trial_number=trial_number, search_target=target)
            )

    def _insert_ignore(self, model: type[Base]) -> Any:
        insert = sqlite_insert if self.is_sqlite else postgresql_insert
        return insert(model).on_conflict_do_nothing()

    def sweep_id(self, name: str) -> int:
        with self.session() as session:
            found = session.scalar(select(Sweep.id).where(Sweep.name == name))
        if found is None:
            known = ", ".join(self.sweep_names()) or "none yet"
            raise UserError(f"no sweep named {name!r} in {self.safe_url} (sweeps: {known})")
        return found

    def sweep_names(self) -> list[str]:
        with self.session() as session:
            return list(session.scalars(select(Sweep.name).order_by(Sweep.id)))

    def claim(
        self,
        sweep_id: int,
        worker: str,
        *,
        stale_after: float = 120.0,
        run_ids: Sequence[int] | None = None,
    ) -> Run | None:
        """Atomically take the next pending, interrupted or abandoned run, or None."""
        self._release_dead_local_workers(sweep_id)
        stale = utcnow() - timedelta(seconds=stale_after)
        candidate = aliased(Run)
        claimable = (candidate.sweep_id == sweep_id) & (
            candidate.status.in_(("pending", "interrupted"))
            | ((candidate.status == "running") & (candidate.heartbeat_at < stale))
        )
        if run_ids is not None:
            claimable &= candidate.id.in_(list(run_ids))
        first = select(candidate.id).where(claimable).order_by(candidate.id).limit(1)
        now = utcnow()
        claimed = {
            "status": "running",
            "worker": worker,
            "heartbeat_at": now,
            "started_at": now,
            "attempts": Run.attempts + 1,
            "error": None,
        }
        with self.session() as session:
            if self.is_sqlite:
                # One UPDATE is one atomic write on SQLite, whose writers are serialised.
                statement = update(Run).where(Run.id == first.scalar_subquery())
            else:
                run_id = session.scalar(first.with_for_update(skip_locked=True))
                if run_id is None:
                    return None
                statement = update(Run).where(Run.id == run_id)
            run_id = session.execute(statement.values(**claimed).returning(Run.id)).scalar()
            if run_id is None:
                return None
            return session.get(Run, run_id, populate_existing=True)

    def _release_dead_local_workers(self, sweep_id: int) -> None:
        """Runs held by processes of this host that no longer exist become interrupted."""
        host = socket.gethostname()
        with self.session() as session:
            held = session.execute(
                select(Run.id, Run.worker).where(
                    Run.sweep_id == sweep_id,
                    Run.status == "running",
                    Run.worker.like(f"{host}:%"),
                )
            ).all()
            dead = [(run_id, worker) for run_id, worker in held if not _alive(worker)]
        for run_id, worker in dead:
            self.interrupt(run_id, worker)

    def heartbeat(self, run_id: int, worker: str) -> bool:
        """Refresh a claim; False when another worker has taken the run over."""
        with self.session() as session:
            return bool(
                session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
                    .values(heartbeat_at=utcnow())
                ).rowcount
            )

    def start_epoch(self, run_id: int, start_epoch: int, device: str) -> None:
        """Forget epochs at or after ``start_epoch``: the checkpoint decides where a run is."""
        with self.session() as session:
            session.execute(delete(Epoch).where(Epoch.run_id == run_id, Epoch.epoch >= start_epoch))
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(device=device, resumed_from_epoch=start_epoch or None)
            )

    def record_epoch(self, run_id: int, record: EpochRecord) -> None:
        with self.session() as session:
            session.execute(
                delete(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == record.epoch)
            )
            session.add(Epoch(run_id=run_id, **asdict(record)))
            session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))

    def finish(self, run_id: int, status: RunStatus, **fields: Any) -> None:
        with self.session() as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status=status, finished_at=utcnow(), **fields)
            )

    def interrupt(self, run_id: int, worker: str) -> None:
        with self.session() as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
                .values(status="interrupted")
            )

    # Reading ---------------------------------------------------------------------------

    def runs(self, sweep: str | None = None, *, with_epochs: bool = False) -> list[Run]:
        query = select(Run).join(Sweep).order_by(Run.id)
        if sweep is not None:
            query = query.where(Run.sweep_id == self.sweep_id(sweep))
        with Session(self.engine) as session:
            runs = list(session.scalars(query))
            for run in runs:
                _ = run.sweep.name
                if with_epochs:
                    _ = list(run.epochs)
            session.expunge_all()
            return runs

    def run(self, run_id: int) -> Run:
        with Session(self.engine) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise UserError(f"no run {run_id} in {self.safe_url}")
            _ = run.sweep.name, list(run.epochs)
            session.expunge_all()
            return run

    def status_counts(self, sweep_id: int) -> dict[str, int]:
        with self.session() as session:
            statuses = session.scalars(select(Run.status).where(Run.sweep_id == sweep_id))
            counts: dict[str, int] = {}
            for status in statuses:
                counts[status] = counts.get(status, 0) + 1
            return counts


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Per connection, and writing nothing: WAL (a property of the file) is set by Store only
    # once the database is known to be ours, never on someone else's.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alive(worker: str | None) -> bool:
    try:
        pid = int((worker or "").rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(err: Exception) -> str:
    return str(getattr(err, "orig", None) or err).strip().splitlines()[0]
