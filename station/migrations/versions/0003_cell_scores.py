"""Each row keeps its per-cell scores (JSON rows x cols), for the per-pin control charts and the shift report.

Revision ID: 0003_cell_scores
Revises: 0002_uid
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_cell_scores"
down_revision = "0002_uid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("cell_scores", sa.Text(), nullable=True))  # None: older rows, no cells


def downgrade() -> None:
    op.drop_column("inspections", "cell_scores")
