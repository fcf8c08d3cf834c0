"""retention (issue 11): pinned sets, sets being deleted, GFS counts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GFS = ("gfs_weekly_count", "gfs_monthly_count", "gfs_yearly_count")


def upgrade() -> None:
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("deleting_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("backup_policies") as batch_op:
        for name in GFS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("backup_policies") as batch_op:
        for name in GFS:
            batch_op.drop_column(name)
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.drop_column("deleting_at")
        batch_op.drop_column("pinned")
