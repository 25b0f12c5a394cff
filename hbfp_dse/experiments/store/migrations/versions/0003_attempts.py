"""hbfp_attempts: every attempt at a run with its environment (host, versions, device, CPU
threads, TF32 and determinism), since results depend on them; hbfp_runs.faults: how many
attempts a fault of their machine stopped.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hbfp_attempts",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("hbfp_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("worker", sa.String(300), nullable=False),
        sa.Column("start_epoch", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean()),
        sa.Column("python_version", sa.String(32), nullable=False),
        sa.Column("torch_version", sa.String(64), nullable=False),
        sa.Column("hbfp_version", sa.String(32), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("cpu_threads", sa.Integer(), nullable=False),
        sa.Column("tf32", sa.Boolean(), nullable=False),
        sa.Column("deterministic", sa.Boolean(), nullable=False),
    )

    op.add_column(
        "hbfp_runs", sa.Column("faults", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("hbfp_runs", "faults")  # SQLite 3.35 drops columns in place
    op.drop_table("hbfp_attempts")
