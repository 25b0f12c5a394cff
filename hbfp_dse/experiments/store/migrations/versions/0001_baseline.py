"""The schema before Alembic: hbfp_meta schema_version 2 (search_target in hbfp_runs).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hbfp_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "hbfp_sweeps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean()),
        sa.Column("python_version", sa.String(32), nullable=False),
        sa.Column("torch_version", sa.String(64), nullable=False),
        sa.Column("hbfp_version", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "hbfp_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "sweep_id",
            sa.Integer(),
            sa.ForeignKey("hbfp_sweeps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("run_hash", sa.String(32), nullable=False),
        sa.Column("config_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trial_number", sa.Integer()),
        sa.Column("search_target", sa.Float()),
        sa.Column("device", sa.String(32)),
        sa.Column("worker", sa.String(300)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resumed_from_epoch", sa.Integer()),
        sa.Column("heartbeat_at", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("final_acc", sa.Float()),
        sa.Column("best_acc", sa.Float()),
        sa.Column("density", sa.Float()),
        sa.Column("density_vs_bf16", sa.Float()),
        sa.Column("mac_share", sa.JSON()),
        sa.Column("schedule", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.UniqueConstraint("sweep_id", "run_hash"),
    )
    op.create_index("ix_hbfp_runs_config_id", "hbfp_runs", ["config_id"])
    op.create_index("ix_hbfp_runs_status", "hbfp_runs", ["status"])
    op.create_table(
        "hbfp_epochs",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("hbfp_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("epoch", sa.Integer(), primary_key=True),
        sa.Column("train_loss", sa.Float(), nullable=False),
        sa.Column("train_acc", sa.Float(), nullable=False),
        sa.Column("test_loss", sa.Float(), nullable=False),
        sa.Column("test_acc", sa.Float(), nullable=False),
        sa.Column("lr", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("images_per_s", sa.Float(), nullable=False),
        sa.Column("formats", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for table in ("hbfp_epochs", "hbfp_runs", "hbfp_sweeps", "hbfp_meta"):
        op.drop_table(table)
