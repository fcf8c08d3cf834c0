"""job compression (CompressType)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_jobs") as batch_op:
        batch_op.add_column(
            sa.Column("compression", sa.String(length=16), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("backup_jobs") as batch_op:
        batch_op.drop_column("compression")
