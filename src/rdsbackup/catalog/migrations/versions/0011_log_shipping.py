"""log shipping (issue 12): a stored log file's checksum of its stored bytes, a
restore's point in time, a log gap's kind

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_files") as batch_op:
        batch_op.add_column(
            sa.Column("stored_sha256", sa.String(length=64), nullable=False, server_default="")
        )
    with op.batch_alter_table("restore_tasks") as batch_op:
        batch_op.add_column(sa.Column("restore_time", sa.DateTime(), nullable=True))
    with op.batch_alter_table("log_gaps") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="Missing")
        )


def downgrade() -> None:
    with op.batch_alter_table("log_gaps") as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("restore_tasks") as batch_op:
        batch_op.drop_column("restore_time")
    with op.batch_alter_table("log_files") as batch_op:
        batch_op.drop_column("stored_sha256")
