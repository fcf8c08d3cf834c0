"""retention (issue 11): pinned sets, sets being deleted, GFS counts, removal indexes

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
    # Removing a set looks up its objects and its incrementals (and so do the foreign
    # keys' checks): without these, each removal scanned both tables.
    op.create_index("ix_backup_objects_backup_id", "backup_objects", ["backup_id"])
    op.create_index("ix_backup_sets_parent_id", "backup_sets", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_backup_sets_parent_id", "backup_sets")
    op.drop_index("ix_backup_objects_backup_id", "backup_objects")
    with op.batch_alter_table("backup_policies") as batch_op:
        for name in GFS:
            batch_op.drop_column(name)
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.drop_column("deleting_at")
        batch_op.drop_column("pinned")
