"""where a set's fingerprints come from

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.add_column(
            sa.Column("fingerprint_source", sa.String(length=16), nullable=False, server_default="")
        )
    # Fingerprints recorded before this revision were all taken by a first verification.
    # PostgreSQL's row hash changed (md5 -> hashtextextended): those are dropped, and the
    # next verification records new ones.
    op.execute(
        "UPDATE backup_sets SET fingerprints = '' WHERE engine = 'PostgreSQL' AND fingerprints <> ''"
    )
    op.execute("UPDATE backup_sets SET fingerprint_source = 'Verify' WHERE fingerprints <> ''")


def downgrade() -> None:
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.drop_column("fingerprint_source")
