"""Validation accuracy: each epoch's loss and accuracy on the validation split held out of the
training set, and a run's final validation accuracy. Runs stored before have none (they held
out nothing).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hbfp_epochs", sa.Column("val_loss", sa.Float(), nullable=True))
    op.add_column("hbfp_epochs", sa.Column("val_acc", sa.Float(), nullable=True))
    op.add_column("hbfp_runs", sa.Column("final_val_acc", sa.Float(), nullable=True))


def downgrade() -> None:
    # SQLite 3.35 drops columns in place.
    op.drop_column("hbfp_runs", "final_val_acc")
    op.drop_column("hbfp_epochs", "val_acc")
    op.drop_column("hbfp_epochs", "val_loss")
