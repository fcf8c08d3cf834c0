"""restore tasks, clone provenance, set verification

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restore_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("backup_id", sa.Integer(), nullable=False),
        sa.Column("source_instance_id", sa.String(length=64), nullable=False),
        sa.Column("target_instance_id", sa.String(length=64), nullable=True),
        sa.Column("db_names", sa.Text(), nullable=False),
        sa.Column("target_db_name", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_restore_tasks_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_tasks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("instances") as batch_op:
        batch_op.add_column(
            sa.Column("pay_type", sa.String(length=16), nullable=False, server_default="Postpaid")
        )
        batch_op.add_column(sa.Column("source_instance_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("source_backup_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("backup_sets") as batch_op:
        batch_op.add_column(sa.Column("fingerprints", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("verify_status", sa.String(length=16), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("verify_reason", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("restore_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup_sets") as batch_op:
        for name in (
            "restore_seconds",
            "verified_at",
            "verify_reason",
            "verify_status",
            "fingerprints",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("instances") as batch_op:
        for name in ("source_backup_id", "source_instance_id", "pay_type"):
            batch_op.drop_column(name)
    op.drop_table("restore_tasks")
