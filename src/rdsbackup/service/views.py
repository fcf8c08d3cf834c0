"""What the service returns: plain values, no session attached, no wire names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Row

from rdsbackup.catalog.models import BackupJob, BackupSet, Database, Instance, split_names

T = TypeVar("T")


@dataclass(frozen=True)
class JobView:
    id: int
    instance_id: str
    status: str
    progress_status: str
    process: int
    job_mode: str
    task_action: str
    method: str
    kind: str
    strategy: str
    db_names: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    bytes_done: int
    bytes_expected: int
    failed_reason: str
    backup_id: int | None

    @classmethod
    def of(cls, job: BackupJob) -> JobView:
        return cls(
            id=job.id,
            instance_id=job.instance_id,
            status=job.status,
            progress_status=job.progress_status,
            process=job.process,
            job_mode=job.job_mode,
            task_action=job.task_action,
            method=job.method,
            kind=job.kind,
            strategy=job.strategy,
            db_names=split_names(job.db_names),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            bytes_done=job.bytes_done,
            bytes_expected=job.bytes_expected,
            failed_reason=job.failed_reason,
            backup_id=job.backup_id,
        )


@dataclass(frozen=True)
class BackupView:
    id: int
    instance_id: str
    status: str
    method: str
    kind: str
    mode: str
    initiator: str
    strategy: str
    db_names: list[str]
    start_time: datetime
    end_time: datetime
    size: int
    checksum: str
    consistent_time: datetime | None
    engine: str
    engine_version: str
    host_instance_id: str
    store_status: str
    is_avail: bool
    meta_status: str
    encryption: str
    expire_time: datetime | None
    parent_id: int | None
    failed_reason: str
    job_id: int | None
    verify_status: str = ""
    verify_reason: str = ""
    verified_at: datetime | None = None
    restore_seconds: float | None = None
    fingerprint_source: str = ""
    pinned: bool = False

    @classmethod
    def of(cls, b: BackupSet | Row[Any]) -> BackupView:
        """From the set's object, or a row of its table's columns."""
        return cls(
            id=b.id,
            instance_id=b.instance_id,
            status=b.status,
            method=b.method,
            kind=b.kind,
            mode=b.mode,
            initiator=b.initiator,
            strategy=b.strategy,
            db_names=split_names(b.db_names),
            start_time=b.start_time,
            end_time=b.end_time,
            size=b.size,
            checksum=b.checksum,
            consistent_time=b.consistent_time,
            engine=b.engine,
            engine_version=b.engine_version,
            host_instance_id=b.host_instance_id,
            store_status=b.store_status,
            is_avail=b.is_avail,
            meta_status=b.meta_status,
            encryption=b.encryption,
            expire_time=b.expire_time,
            parent_id=b.parent_id,
            failed_reason=b.failed_reason,
            job_id=b.job_id,
            verify_status=b.verify_status,
            verify_reason=b.verify_reason,
            verified_at=b.verified_at,
            restore_seconds=b.restore_seconds,
            fingerprint_source=b.fingerprint_source,
            pinned=b.pinned,
        )


@dataclass(frozen=True)
class DatabaseView:
    name: str
    character_set: str
    collation: str
    status: str

    @classmethod
    def of(cls, d: Database) -> DatabaseView:
        return cls(d.name, d.character_set, d.collation, d.status)


@dataclass(frozen=True)
class InstanceView:
    id: str
    engine: str
    engine_version: str
    host: str
    port: int
    status: str
    status_reason: str
    lock_mode: str
    resource_group_id: str
    description: str
    region_id: str
    zone_id: str
    category: str
    read_only: bool
    local: bool
    manual_backup_enabled: bool
    data_bytes: int
    created_at: datetime
    databases: list[DatabaseView] = field(default_factory=list)

    @classmethod
    def of(cls, i: Instance, databases: list[DatabaseView] | None = None) -> InstanceView:
        return cls(
            id=i.id,
            engine=i.engine,
            engine_version=i.engine_version,
            host=i.host,
            port=i.port,
            status=i.status,
            status_reason=i.status_reason,
            lock_mode=i.lock_mode,
            resource_group_id=i.resource_group_id,
            description=i.description,
            region_id=i.region_id,
            zone_id=i.zone_id,
            category=i.category,
            read_only=i.read_only,
            local=i.local,
            manual_backup_enabled=i.manual_backup_enabled,
            data_bytes=i.data_bytes,
            created_at=i.created_at,
            databases=databases or [],
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page_number: int
    page_size: int
