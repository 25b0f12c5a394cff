"""Opening a database as the results store: recognise it as ours, create our tables, or bring
them to the newest revision with Alembic.

Alembic runs from code on the store's own connection (no alembic.ini) and keeps its revision
in ``hbfp_alembic_version``: Optuna keeps its own in ``alembic_version`` in the same database.
Databases from before Alembic carry ``hbfp_meta.schema_version`` 2 and no revision; they are
stamped at the baseline revision, which is that schema, and upgraded like any other.

``hbfp_meta.store_id``, a random UUID, names the database (its checkpoints carry it); it is
written with the tables, and added on opening to a database made before it existed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import column, func, insert, inspect, select, table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ...lazy import lazy_module
from .errors import (
    ForeignDatabaseError,
    NewerDatabaseError,
    NoResultsError,
    SchemaVersionError,
    StoreError,
)
from .schema import PREFIX, Base, MetaRow

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic loads only to create or upgrade the tables: a store at the head revision is opened
# with one query for its revision.
command = lazy_module("alembic.command")
alembic_config_module = lazy_module("alembic.config")
migration = lazy_module("alembic.runtime.migration")
script = lazy_module("alembic.script")

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = PREFIX + "alembic_version"
APPLICATION = "hbfp-dse"
# hbfp_meta's schema_version: 2, the last schema before Alembic, is the baseline revision;
# every later change is a revision and leaves it at 2.
SCHEMA_VERSION = 2
BASELINE = "0001"
HEAD = "0005"  # the newest revision in migrations/versions (a test holds them equal)
STORE_ID = "store_id"
# The PostgreSQL advisory lock held while creating or upgrading the tables ("hbfp" in ASCII).
LOCK_KEY = 0x68626670
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


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's filter when it compares schemas: our tables only, not Optuna's."""
    return type_ != "table" or (name or "").startswith(PREFIX)


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for our revisions, run on ``connection`` (see env.py)."""
    config = alembic_config_module.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def revisions() -> ScriptDirectory:
    return script.ScriptDirectory(str(MIGRATIONS))


def open_schema(engine: Engine, url: str, *, create: bool) -> str:
    """Make sure ``engine``'s database holds our tables at the head revision, and return its
    store id; ``create=False`` refuses a database without them. ``url`` (password hidden)
    names it in errors."""
    try:
        tables = set(inspect(engine).get_table_names())
    except DBAPIError as err:
        raise StoreError(url, f"cannot open database {url}: {_first_line(err)}") from None
    if MetaRow.__tablename__ not in tables:
        foreign = sorted(tables - OPTUNA_TABLES)
        if foreign:
            raise ForeignDatabaseError(url, foreign[0])
        if not create:
            raise NoResultsError(url)
        _create(engine, url)
    meta = _check_meta(engine, url)
    _upgrade(engine, url)
    return meta.get(STORE_ID) or _add_store_id(engine, url)


def _create(engine: Engine, url: str) -> None:
    try:
        with _locked(engine) as connection:
            if inspect(connection).has_table(MetaRow.__tablename__):
                return  # another process was first
            Base.metadata.create_all(connection)
            connection.execute(
                insert(MetaRow),
                [
                    {"key": "application", "value": APPLICATION},
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": STORE_ID, "value": str(uuid.uuid4())},
                ],
            )
            command.stamp(alembic_config(connection), "head")
    except SQLAlchemyError as err:
        raise StoreError(url, f"cannot create tables in {url}: {_first_line(err)}") from None


def _check_meta(engine: Engine, url: str) -> dict[str, str]:
    with engine.connect() as connection:
        values = dict(connection.execute(select(MetaRow.key, MetaRow.value)).all())
    if values.get("application") != APPLICATION:
        raise ForeignDatabaseError(url, None)
    version = int(values.get("schema_version", "0"))
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(url, version, SCHEMA_VERSION)
    return values


def _add_store_id(engine: Engine, url: str) -> str:
    try:
        with _locked(engine) as connection:
            query = select(MetaRow.value).where(MetaRow.key == STORE_ID)
            existing = connection.execute(query).scalar()
            if existing is not None:
                return existing  # another process was first
            store_id = str(uuid.uuid4())
            connection.execute(insert(MetaRow).values(key=STORE_ID, value=store_id))
            return store_id
    except SQLAlchemyError as err:
        raise StoreError(url, f"cannot name the store in {url}: {_first_line(err)}") from None


def _upgrade(engine: Engine, url: str) -> None:
    with engine.connect() as connection:
        if _recorded(connection) == HEAD:
            return  # the usual case, and it writes nothing
        _current(connection, url)  # a newer hbfp-dse's store is refused before any lock
    try:
        with _locked(engine) as connection:
            config = alembic_config(connection)
            if _current(connection, url) is None:  # from before Alembic
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
    except SQLAlchemyError as err:
        raise StoreError(url, f"cannot upgrade {url}: {_first_line(err)}") from None


def _recorded(connection: Connection) -> str | None:
    """The revision in the version table, without Alembic; None before Alembic."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    version = table(VERSION_TABLE, column("version_num"))
    return connection.execute(select(version.c.version_num)).scalar()


def _current(connection: Connection, url: str) -> str | None:
    """The database's revision, None before Alembic; a revision we do not know is refused."""
    options = {"version_table": VERSION_TABLE}
    context = migration.MigrationContext.configure(connection, opts=options)
    current = context.get_current_revision()
    known = {script.revision for script in revisions().walk_revisions()}
    if current is not None and current not in known:
        raise NewerDatabaseError(url, current, revisions().get_current_head() or "")
    return current


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock, so that processes opening the store
    at once create or upgrade it once: the others find the work done."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
        yield connection


def _first_line(err: Exception) -> str:
    return str(getattr(err, "orig", None) or err).strip().splitlines()[0]
