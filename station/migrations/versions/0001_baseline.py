"""The result log of the first stations: one row per inspection.

Revision ID: 0001_baseline
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("station", sa.String(100), nullable=False),
        sa.Column("frame", sa.String(500), nullable=False),
        sa.Column("verdict", sa.String(10), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("top_cell", sa.String(20), nullable=True),
        sa.Column("recipe_name", sa.String(200), nullable=False),
        sa.Column("recipe_hash", sa.String(80), nullable=False),
        sa.Column("timings", sa.Text(), nullable=False),
        sa.Column("image_path", sa.String(500), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_inspections_time", "inspections", ["time"])
    op.create_index("ix_inspections_verdict", "inspections", ["verdict"])
    op.create_index("ix_inspections_recipe_hash", "inspections", ["recipe_hash"])


def downgrade() -> None:
    op.drop_table("inspections")
