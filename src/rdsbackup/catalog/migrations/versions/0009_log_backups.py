"""log backups (issue 12): log_files, log_streams, log_gaps

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("start_position", sa.String(length=128), nullable=False),
        sa.Column("end_position", sa.String(length=128), nullable=False),
        sa.Column("first_time", sa.DateTime(), nullable=True),
        sa.Column("last_time", sa.DateTime(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("compression", sa.String(length=16), nullable=False),
        sa.Column("encryption_key_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_data_key", sa.String(length=128), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        sa.Column("expire_time", sa.DateTime(), nullable=True),
        sa.Column("deleting_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_log_files_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_log_files_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_files")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_log_files_instance_name", "log_files", ["instance_id", "timeline", "name"], unique=True
    )
    op.create_index(
        "ix_log_files_instance_sequence", "log_files", ["instance_id", "timeline", "sequence"]
    )
    op.create_index("ix_log_files_instance_end", "log_files", ["instance_id", "last_time"])
    op.create_table(
        "log_streams",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("last_file", sa.String(length=255), nullable=False),
        sa.Column("last_durable_time", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_log_streams_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_log_streams")),
    )
    op.create_table(
        "log_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("after_file", sa.String(length=255), nullable=False),
        sa.Column("before_file", sa.String(length=255), nullable=False),
        sa.Column("from_time", sa.DateTime(), nullable=True),
        sa.Column("to_time", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_log_gaps_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_gaps")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_log_gaps_instance", "log_gaps", ["instance_id"])


def downgrade() -> None:
    op.drop_index("ix_log_gaps_instance", table_name="log_gaps")
    op.drop_table("log_gaps")
    op.drop_table("log_streams")
    op.drop_index("ix_log_files_instance_end", table_name="log_files")
    op.drop_index("ix_log_files_instance_sequence", table_name="log_files")
    op.drop_index("uq_log_files_instance_name", table_name="log_files")
    op.drop_table("log_files")
