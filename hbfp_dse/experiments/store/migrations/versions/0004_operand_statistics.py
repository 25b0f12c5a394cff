"""hbfp_operand_statistics: the quantization error of every quantized operand of every layer,
per epoch of a run trained with ``analysis``.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hbfp_operand_statistics",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("hbfp_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("epoch", sa.Integer(), primary_key=True),
        sa.Column("layer", sa.String(300), primary_key=True),
        sa.Column("operand", sa.String(16), primary_key=True),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("sqnr_db", sa.Float()),
        sa.Column("rel_l2", sa.Float(), nullable=False),
        sa.Column("wasserstein", sa.Float(), nullable=False),
        sa.Column("flushed", sa.Float(), nullable=False),
        sa.Column("saturated", sa.Float(), nullable=False),
        sa.Column("exp_min", sa.Integer()),
        sa.Column("exp_max", sa.Integer()),
    )


def downgrade() -> None:
    op.drop_table("hbfp_operand_statistics")
