"""Each row names its part: the PLC's part ID (or a counted one) and when the part was triggered
(station/core/trigger.py).

Revision ID: 0004_part
Revises: 0003_cell_scores
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_part"
down_revision = "0003_cell_scores"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("part_id", sa.String(64), nullable=True))  # None: older rows
    op.add_column("inspections", sa.Column("trigger_time", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_inspections_part_id", "inspections", ["part_id"])


def downgrade() -> None:
    op.drop_index("ix_inspections_part_id", table_name="inspections")
    op.drop_column("inspections", "trigger_time")
    op.drop_column("inspections", "part_id")
