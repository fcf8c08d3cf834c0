"""scheduler (issue 11): the scheduler's lease and its decisions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "scheduled_backups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("slot_time", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("catch_up", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_scheduled_backups_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_backups")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_scheduled_backups_instance_slot",
        "scheduled_backups",
        ["instance_id", "slot_time"],
        unique=True,
    )
    op.create_index("ix_scheduled_backups_status", "scheduled_backups", ["status"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_backups_status", table_name="scheduled_backups")
    op.drop_index("uq_scheduled_backups_instance_slot", table_name="scheduled_backups")
    op.drop_table("scheduled_backups")
    op.drop_table("leases")
