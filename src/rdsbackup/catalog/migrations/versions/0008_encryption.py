"""encryption (issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_policies") as batch_op:
        batch_op.add_column(sa.Column("backup_encryption", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("encryption_key_id", sa.String(length=64), nullable=False, server_default="")
        )
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.add_column(
            sa.Column("encryption_key_id", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("wrapped_data_key", sa.String(length=128), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.drop_column("wrapped_data_key")
        batch_op.drop_column("encryption_key_id")
    with op.batch_alter_table("backup_policies") as batch_op:
        batch_op.drop_column("encryption_key_id")
        batch_op.drop_column("backup_encryption")
