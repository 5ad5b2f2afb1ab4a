"""Each row gets the uid of its log ticket, so a spool drained twice (a crash mid-drain) is not logged twice.

Revision ID: 0002_uid
Revises: 0001_baseline
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_uid"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("uid", sa.String(32), nullable=True))  # None: rows of older stations
    op.create_index("ix_inspections_uid", "inspections", ["uid"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_inspections_uid", "inspections")
    op.drop_column("inspections", "uid")
