"""An index on hbfp_runs (sweep_id, status): every claim looks up a sweep's claimable runs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_hbfp_runs_sweep_id_status", "hbfp_runs", ["sweep_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_hbfp_runs_sweep_id_status", table_name="hbfp_runs")
