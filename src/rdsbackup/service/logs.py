"""Log backups as the API shows them: DescribeBinlogFiles (binlogs, and WAL for
PostgreSQL, as Alibaba lists both there) and DescribeLocalAvailableRecoveryTime (the
restorable window, with the stream's state and its gaps as extensions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import LogFileRecord, LogGap, LogStreamState, policy_for
from rdsbackup.engines.logs import LogEngine
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.jobs.logchain import window
from rdsbackup.jobs.logstore import COMPLETED
from rdsbackup.service.auth import Principal
from rdsbackup.service.instances import InstanceService
from rdsbackup.service.views import Page
from rdsbackup.states import LogStreamStatus


@dataclass(frozen=True)
class LogFileView:
    name: str
    kind: str
    timeline: int
    size: int
    raw_size: int
    begin: datetime
    end: datetime
    sha256: str
    status: str
    start_position: str
    end_position: str


@dataclass(frozen=True)
class GapView:
    after_file: str
    before_file: str
    from_time: datetime | None
    to_time: datetime | None
    reason: str
    kind: str


@dataclass(frozen=True)
class RecoveryView:
    instance_id: str
    begin: datetime | None
    end: datetime | None
    enabled: bool
    status: str
    reason: str
    last_file: str
    last_durable_time: datetime | None
    gaps: list[GapView]


class LogService:
    def __init__(
        self, catalog: Catalog, instances: InstanceService, engines: EngineRegistry
    ) -> None:
        self.catalog = catalog
        self.instances = instances
        self.engines = engines

    def files(
        self,
        who: Principal,
        instance_id: str,
        start: datetime,
        end: datetime,
        page: int,
        size: int,
    ) -> tuple[Page[LogFileView], int]:
        """The stored files holding entries between ``start`` and ``end`` (a file
        without commits counts as written when it was stored), and their total size."""
        self.instances.require(who, instance_id)
        begin_of = func.coalesce(LogFileRecord.first_time, LogFileRecord.stored_at)
        end_of = func.coalesce(LogFileRecord.last_time, LogFileRecord.stored_at)
        where = (
            LogFileRecord.instance_id == instance_id,
            LogFileRecord.account_id == who.account_id,
            LogFileRecord.deleting_at.is_(None),
            begin_of <= end,
            end_of >= start,
        )
        with self.catalog.read() as s:
            total, total_size = s.execute(
                select(
                    func.count(LogFileRecord.id), func.coalesce(func.sum(LogFileRecord.size), 0)
                ).where(*where)
            ).one()
            rows = s.scalars(
                select(LogFileRecord)
                .where(*where)
                .order_by(LogFileRecord.timeline, LogFileRecord.kind, LogFileRecord.sequence)
                .offset((page - 1) * size)
                .limit(size)
            )
            items = [
                LogFileView(
                    r.name,
                    r.kind,
                    r.timeline,
                    r.size,
                    r.raw_size,
                    r.first_time or r.stored_at,
                    r.last_time or r.stored_at,
                    r.sha256,
                    r.status if r.status == COMPLETED else "Uploading",
                    r.start_position,
                    r.end_position,
                )
                for r in rows
            ]
        return Page(items, int(total), page, size), int(total_size)

    def recovery(self, who: Principal, instance_id: str) -> RecoveryView:
        instance = self.instances.get(who, instance_id)
        engine = self.engines.for_engine(instance.engine)
        with self.catalog.read() as s:
            found = (
                window(s, instance_id, engine.base_log) if isinstance(engine, LogEngine) else None
            )
            state = s.get(LogStreamState, instance_id)
            enabled = policy_for(s, instance_id).enable_backup_log
            gaps = [
                GapView(g.after_file, g.before_file, g.from_time, g.to_time, g.reason, g.kind)
                for g in s.scalars(
                    select(LogGap).where(LogGap.instance_id == instance_id).order_by(LogGap.id)
                )
            ]
            return RecoveryView(
                instance_id=instance_id,
                begin=found.begin if found else None,
                end=found.end if found else None,
                enabled=enabled,
                status=state.status if state else LogStreamStatus.STOPPED,
                reason=state.reason if state else "",
                last_file=state.last_file if state else "",
                last_durable_time=state.last_durable_time if state else None,
                gaps=gaps,
            )
