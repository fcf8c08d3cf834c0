"""The catalog's tables. Alembic migrations (``catalog/migrations``) create them; a test
checks the two agree."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rdsbackup.states import (
    BackupInitiator,
    BackupMode,
    DatabaseStatus,
    InstanceStatus,
    JobStatus,
    KeyStatus,
    LockMode,
    MetaStatus,
    RestoreStatus,
    ScheduleStatus,
    StoreStatus,
    TaskAction,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UNFINISHED = f"status NOT IN ('{JobStatus.FINISHED}', '{JobStatus.FAILED}')"


def split_names(value: str) -> list[str]:
    """Database names are kept as a JSON list: a name may contain any character."""
    return list(json.loads(value)) if value else []


def join_names(names: list[str]) -> str:
    return json.dumps(names) if names else ""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AccessKey(Base):
    __tablename__ = "access_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_key_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.ACTIVE)
    actions: Mapped[str] = mapped_column(String(1024), default="*")
    """Comma-separated action patterns this key may call (``*``, ``Describe*``)."""
    description: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    account: Mapped[Account] = relationship()


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    engine: Mapped[str] = mapped_column(String(32))
    engine_version: Mapped[str] = mapped_column(String(32), default="")
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    admin_user: Mapped[str] = mapped_column(String(128))
    password_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    data_dir: Mapped[str | None] = mapped_column(String(1024))
    os_user: Mapped[str | None] = mapped_column(String(64))
    local: Mapped[bool] = mapped_column(Boolean, default=False)
    """Provisioned and supervised by this service (else: a registered existing server)."""
    base_dir: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(32), default=InstanceStatus.CREATING)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    lock_mode: Mapped[str] = mapped_column(String(32), default=LockMode.UNLOCK)
    resource_group_id: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    region_id: Mapped[str] = mapped_column(String(64), default="")
    zone_id: Mapped[str] = mapped_column(String(64), default="")
    category: Mapped[str] = mapped_column(String(32), default="Basic")
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    manual_backup_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    data_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    probed_at: Mapped[datetime | None] = mapped_column(DateTime)
    pay_type: Mapped[str] = mapped_column(String(16), default="Postpaid", server_default="Postpaid")
    source_instance_id: Mapped[str | None] = mapped_column(String(64))
    """For a clone: the instance its backup set came from."""
    source_backup_id: Mapped[int | None] = mapped_column(Integer)
    host_queue: Mapped[str] = mapped_column(String(128), default="", server_default="")
    """The worker queue that runs this instance's jobs (``dispatcher = "celery"``);
    empty: the default queue (``instance add --host-queue``)."""


class BackupPolicy(Base):
    """An instance's backup policy (DescribeBackupPolicy / ModifyBackupPolicy). An
    instance without a row has the defaults below (``policy_for``)."""

    __tablename__ = "backup_policies"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True
    )
    # DataBackupPolicy
    preferred_backup_time: Mapped[str] = mapped_column(String(16), default="02:00Z-03:00Z")
    """A one-hour UTC window, ``HH:mmZ-HH:mmZ``."""
    preferred_backup_period: Mapped[str] = mapped_column(
        String(128), default="Tuesday,Thursday,Saturday"
    )
    """Comma list of weekdays (``Monday`` ... ``Sunday``), at least two."""
    backup_retention_period: Mapped[int] = mapped_column(Integer, default=7)
    backup_interval: Mapped[str] = mapped_column(String(8), default="-1")
    """Minutes between automated backups on a backup day; ``-1``: one per window."""
    backup_method: Mapped[str] = mapped_column(String(16), default="Physical")
    compress_type: Mapped[str] = mapped_column(String(4), default="")
    """Alibaba's CompressType code as given; empty: the service's compression."""
    category: Mapped[str] = mapped_column(String(16), default="Standard")
    enable_increment_data_backup: Mapped[bool] = mapped_column(Boolean, default=False)
    inc_backup_interval: Mapped[int] = mapped_column(Integer, default=0)
    """Minutes between automated incrementals (0: none between fulls)."""
    archive_backup_retention_period: Mapped[int] = mapped_column(Integer, default=0)
    archive_backup_keep_policy: Mapped[str] = mapped_column(String(16), default="ByMonth")
    archive_backup_keep_count: Mapped[int] = mapped_column(Integer, default=1)
    released_keep_policy: Mapped[str] = mapped_column(String(16), default="None")
    enable_pitr_protection: Mapped[bool] = mapped_column(Boolean, default=False)
    # LogBackupPolicy
    enable_backup_log: Mapped[bool] = mapped_column(Boolean, default=False)
    """Turns log shipping (``jobs.logship``) on or off for the instance."""
    log_backup_retention_period: Mapped[int] = mapped_column(Integer, default=7)
    local_log_retention_hours: Mapped[int] = mapped_column(Integer, default=18)
    local_log_retention_space: Mapped[int] = mapped_column(Integer, default=30)
    high_space_usage_protection: Mapped[str] = mapped_column(String(8), default="Enable")
    log_backup_local_retention_number: Mapped[int] = mapped_column(Integer, default=60)
    log_backup_frequency: Mapped[str] = mapped_column(String(16), default="")
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Extension (migration 0007): grandfather-father-son counts, 0 = off. The first
    # successful full set of each of the N newest weeks / months / years that have one
    # is kept past its retention (jobs/retention_rules.py).
    gfs_weekly_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    gfs_monthly_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    gfs_yearly_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Backup encryption (0008): EnableBackupEncryption / DisableBackupEncryption
    backup_encryption: Mapped[bool | None] = mapped_column(Boolean)
    """True/False as set by Enable/DisableBackupEncryption; None: the service's
    ``encrypt_backups`` setting decides."""
    encryption_key_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """The KEK id EnableBackupEncryption named (EncryptionKey); empty: the active one."""


def policy_for(s: Session, instance_id: str) -> BackupPolicy:
    """The instance's stored policy, else a new (unsaved) one holding the defaults."""
    policy = s.get(BackupPolicy, instance_id)
    if policy is not None:
        return policy
    fresh = BackupPolicy(instance_id=instance_id)
    for column in BackupPolicy.__table__.columns:
        if getattr(fresh, column.key) is None and column.default is not None:
            setattr(fresh, column.key, column.default.arg)
    return fresh


def encrypts_backups(policy: BackupPolicy, default: bool) -> bool:
    """Whether the instance's new sets are encrypted: its own switch (Enable/
    DisableBackupEncryption), else ``default`` (the ``encrypt_backups`` setting)."""
    return default if policy.backup_encryption is None else policy.backup_encryption


class Database(Base):
    __tablename__ = "databases"
    __table_args__ = (Index("uq_databases_instance_name", "instance_id", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    character_set: Mapped[str] = mapped_column(String(64), default="")
    collation: Mapped[str] = mapped_column("db_collation", String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default=DatabaseStatus.RUNNING)


class BackupJob(Base):
    __tablename__ = "backup_jobs"
    __table_args__ = (
        # The database, not Python, guarantees one unfinished job per instance.
        Index(
            "uq_backup_jobs_one_unfinished",
            "instance_id",
            unique=True,
            sqlite_where=text(UNFINISHED),
            postgresql_where=text(UNFINISHED),
        ),
        Index("uq_backup_jobs_client_token", "account_id", "client_token", unique=True),
        Index("ix_backup_jobs_instance_day", "instance_id", "created_day"),
        {"sqlite_autoincrement": True},  # ids are never reused, even after deletes
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.NO_START)
    progress_status: Mapped[str] = mapped_column(String(16), default=JobStatus.NO_START)
    process: Mapped[int] = mapped_column(Integer, default=0)
    job_mode: Mapped[str] = mapped_column(String(16), default=BackupMode.MANUAL)
    task_action: Mapped[str] = mapped_column(String(32), default=TaskAction.TEMP)
    method: Mapped[str] = mapped_column(String(16))
    requested_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32), default="FullBackup")
    strategy: Mapped[str] = mapped_column(String(16), default="instance")
    db_names: Mapped[str] = mapped_column(Text, default="")
    retention_days: Mapped[int | None] = mapped_column(Integer)
    client_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_day: Mapped[str] = mapped_column(String(10))
    """UTC ``YYYY-MM-DD``: the daily backup quota counts by it."""
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_expected: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    failed_reason: Mapped[str] = mapped_column(Text, default="")
    storage_prefix: Mapped[str] = mapped_column(String(512), default="")
    backup_id: Mapped[int | None] = mapped_column(Integer)
    compression: Mapped[str] = mapped_column(String(16), default="", server_default="")
    """``CompressType`` asked for (extension); empty means the service's setting."""


class BackupSet(Base):
    __tablename__ = "backup_sets"
    __table_args__ = (
        Index("ix_backup_sets_instance_start", "instance_id", "start_time"),
        {"sqlite_autoincrement": True},  # a deleted BackupId never names another set
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default=BackupMode.MANUAL)
    initiator: Mapped[str] = mapped_column(String(16), default=BackupInitiator.USER)
    strategy: Mapped[str] = mapped_column(String(16), default="instance")
    db_names: Mapped[str] = mapped_column(Text, default="")
    start_time: Mapped[datetime] = mapped_column(DateTime)
    end_time: Mapped[datetime] = mapped_column(DateTime)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_prefix: Mapped[str] = mapped_column(String(512), default="")
    checksum: Mapped[str] = mapped_column(String(128), default="")
    """sha256 of the set's manifest.json, which lists every object's own sha256."""
    consistent_time: Mapped[datetime | None] = mapped_column(DateTime)
    consistent_position: Mapped[str] = mapped_column(Text, default="{}")
    engine: Mapped[str] = mapped_column(String(32))
    engine_version: Mapped[str] = mapped_column(String(32), default="")
    host_instance_id: Mapped[str] = mapped_column(String(64), default="")
    store_status: Mapped[str] = mapped_column(String(16), default=StoreStatus.ENABLED)
    is_avail: Mapped[bool] = mapped_column(Boolean, default=True)
    meta_status: Mapped[str] = mapped_column(String(16), default=MetaStatus.OK)
    encryption: Mapped[str] = mapped_column(String(256), default="{}")
    """DescribeBackups' ``Encryption``: a JSON string, ``{}`` for an unencrypted set."""
    encryption_key_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """The KEK id that wrapped the set's data key (empty: not encrypted)."""
    wrapped_data_key: Mapped[str] = mapped_column(String(128), default="", server_default="")
    """The set's data key, wrapped (as in its manifest's ``encryption``)."""
    retention_days: Mapped[int | None] = mapped_column(Integer)
    expire_time: Mapped[datetime | None] = mapped_column(DateTime)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("backup_sets.id"), index=True)
    failed_reason: Mapped[str] = mapped_column(Text, default="")
    fingerprints: Mapped[str] = mapped_column(Text, default="", server_default="")
    """JSON ``{table: [rows, checksum]}`` the set must restore to (see jobs/restore.py)."""
    fingerprint_source: Mapped[str] = mapped_column(String(16), default="", server_default="")
    """``Backup`` (taken in the dump's snapshot), ``Verify`` (by the first successful
    verification) or empty (none yet)."""
    verify_status: Mapped[str] = mapped_column(String(16), default="", server_default="")
    verify_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    restore_seconds: Mapped[float | None] = mapped_column(Float)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Extension (``rdsbackup backup pin``): retention never removes the set."""
    deleting_at: Mapped[datetime | None] = mapped_column(DateTime)
    """Set when the set's removal began (jobs/removal.py): from then on it is not
    available, its objects are being deleted, and its record goes last."""

    objects: Mapped[list[BackupObject]] = relationship(
        cascade="all, delete-orphan", order_by="BackupObject.id", lazy="selectin"
    )


class BackupObject(Base):
    __tablename__ = "backup_objects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[int] = mapped_column(
        ForeignKey("backup_sets.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    raw_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    compression: Mapped[str] = mapped_column(String(16))


class RestoreTask(Base):
    """A restore: a clone, one database into an instance, or a verification."""

    __tablename__ = "restore_tasks"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """``clone``, ``database`` or ``verify``."""
    backup_id: Mapped[int] = mapped_column(Integer)
    source_instance_id: Mapped[str] = mapped_column(String(64))
    target_instance_id: Mapped[str | None] = mapped_column(String(64))
    db_names: Mapped[str] = mapped_column(Text, default="")
    target_db_name: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(16), default=RestoreStatus.PENDING)
    failed_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    restore_time: Mapped[datetime | None] = mapped_column(DateTime)
    """A point-in-time clone: replay the logs up to this instant (UTC)."""


class Nonce(Base):
    __tablename__ = "nonces"

    access_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Lease(Base):
    """A named lease (the scheduler's): one owner at a time, until ``expires_at``. Taken
    with a conditional UPDATE (or the INSERT of a new row), so two nodes on one catalog
    never both hold it."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class ScheduledBackup(Base):
    """One decision of the scheduler: a slot of an instance's backup policy and what
    became of it. The unique (instance, slot) key makes a slot decided once, whatever
    the clock or the number of schedulers does."""

    __tablename__ = "scheduled_backups"
    __table_args__ = (
        Index("uq_scheduled_backups_instance_slot", "instance_id", "slot_time", unique=True),
        Index("ix_scheduled_backups_status", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    slot_time: Mapped[datetime] = mapped_column(DateTime)
    """When the policy wanted the backup (UTC)."""
    deadline: Mapped[datetime] = mapped_column(DateTime)
    """The last moment (exclusive) it may start: the window's end or the next slot."""
    kind: Mapped[str] = mapped_column(String(32))
    """``FullBackup`` or ``IncrementalBackup``: what was started (else wanted)."""
    status: Mapped[str] = mapped_column(String(16), default=ScheduleStatus.PENDING)
    catch_up: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(Integer)
    decided_at: Mapped[datetime] = mapped_column(DateTime)
    """The scheduler's clock when the decision was last changed."""


class LogFileRecord(Base):
    """One stored log file of an instance: a MariaDB binlog or a PostgreSQL WAL segment
    (or timeline history file). Stored like a set's objects under ``object_key``."""

    __tablename__ = "log_files"
    __table_args__ = (
        Index("uq_log_files_instance_name", "instance_id", "timeline", "name", unique=True),
        Index("ix_log_files_instance_sequence", "instance_id", "timeline", "sequence"),
        Index("ix_log_files_instance_end", "instance_id", "last_time"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """``binlog``, ``wal`` or ``history``."""
    name: Mapped[str] = mapped_column(String(255))
    timeline: Mapped[int] = mapped_column(Integer, default=1)
    sequence: Mapped[int] = mapped_column(BigInteger)
    start_position: Mapped[str] = mapped_column(String(128), default="")
    end_position: Mapped[str] = mapped_column(String(128), default="")
    first_time: Mapped[datetime | None] = mapped_column(DateTime)
    last_time: Mapped[datetime | None] = mapped_column(DateTime)
    extra: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16), default="Completed")
    """``Uploading`` while being stored, then ``Completed`` (DescribeBinlogFiles'
    RemoteStatus)."""
    object_key: Mapped[str] = mapped_column(String(512), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    """Of the raw file (a same-name file with another checksum is refused)."""
    stored_sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """Of the stored (compressed, maybe encrypted) bytes: what a read verifies."""
    compression: Mapped[str] = mapped_column(String(16), default="zstd")
    encryption_key_id: Mapped[str] = mapped_column(String(64), default="")
    wrapped_data_key: Mapped[str] = mapped_column(String(128), default="")
    stored_at: Mapped[datetime] = mapped_column(DateTime)
    expire_time: Mapped[datetime | None] = mapped_column(DateTime)
    deleting_at: Mapped[datetime | None] = mapped_column(DateTime)


class LogStreamState(Base):
    """The log backup of one instance: whether it streams, where it is, why not."""

    __tablename__ = "log_streams"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default="Stopped")
    """``Streaming``, ``Restarting``, ``Broken`` (a gap since the last base set) or
    ``Stopped`` (log backup off)."""
    reason: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str | None] = mapped_column(String(255))
    """The node whose shipper streams it (a lease, like a job's)."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_file: Mapped[str] = mapped_column(String(255), default="")
    last_durable_time: Mapped[datetime | None] = mapped_column(DateTime)
    """Commit time of the newest transaction whose log is stored."""
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class LogGap(Base):
    """A range of an instance's log that is not stored: times inside it cannot be
    restored to (``DescribeLocalAvailableRecoveryTime`` and ``CloneDBInstance`` skip it)."""

    __tablename__ = "log_gaps"
    __table_args__ = (
        Index("ix_log_gaps_instance", "instance_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    timeline: Mapped[int] = mapped_column(Integer, default=1)
    after_file: Mapped[str] = mapped_column(String(255), default="")
    """The last stored file before the gap (empty: none)."""
    before_file: Mapped[str] = mapped_column(String(255), default="")
    """The first stored file after it."""
    from_time: Mapped[datetime | None] = mapped_column(DateTime)
    to_time: Mapped[datetime | None] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="Missing", server_default="Missing")
    """A ``states.LogGapKind``."""
    detected_at: Mapped[datetime] = mapped_column(DateTime)
