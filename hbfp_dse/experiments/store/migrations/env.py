"""Alembic's entry point for the store's revisions. It runs only through
``hbfp_dse.experiments.store.migrate``, on the connection that passes in
``config.attributes["connection"]``; there is no alembic.ini and no offline mode.

A new revision is a new file in ``versions/`` whose ``down_revision`` is the current head;
tests/test_store_migrations.py checks that the revisions build exactly ``schema.py``.
"""

from __future__ import annotations

from alembic import context

from hbfp_dse.experiments.store.migrate import VERSION_TABLE, include_name
from hbfp_dse.experiments.store.schema import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
