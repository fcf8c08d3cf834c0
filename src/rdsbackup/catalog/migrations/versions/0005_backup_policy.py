"""backup policies (DescribeBackupPolicy / ModifyBackupPolicy)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_policies",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("preferred_backup_time", sa.String(length=16), nullable=False),
        sa.Column("preferred_backup_period", sa.String(length=128), nullable=False),
        sa.Column("backup_retention_period", sa.Integer(), nullable=False),
        sa.Column("backup_interval", sa.String(length=8), nullable=False),
        sa.Column("backup_method", sa.String(length=16), nullable=False),
        sa.Column("compress_type", sa.String(length=4), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("enable_increment_data_backup", sa.Boolean(), nullable=False),
        sa.Column("inc_backup_interval", sa.Integer(), nullable=False),
        sa.Column("archive_backup_retention_period", sa.Integer(), nullable=False),
        sa.Column("archive_backup_keep_policy", sa.String(length=16), nullable=False),
        sa.Column("archive_backup_keep_count", sa.Integer(), nullable=False),
        sa.Column("released_keep_policy", sa.String(length=16), nullable=False),
        sa.Column("enable_pitr_protection", sa.Boolean(), nullable=False),
        sa.Column("enable_backup_log", sa.Boolean(), nullable=False),
        sa.Column("log_backup_retention_period", sa.Integer(), nullable=False),
        sa.Column("local_log_retention_hours", sa.Integer(), nullable=False),
        sa.Column("local_log_retention_space", sa.Integer(), nullable=False),
        sa.Column("high_space_usage_protection", sa.String(length=8), nullable=False),
        sa.Column("log_backup_local_retention_number", sa.Integer(), nullable=False),
        sa.Column("log_backup_frequency", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_backup_policies_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_backup_policies")),
    )


def downgrade() -> None:
    op.drop_table("backup_policies")
