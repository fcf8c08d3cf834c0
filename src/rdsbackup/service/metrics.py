"""Backup state as Prometheus metrics, read from the catalog at scrape time.

Every node sharing a catalog therefore reports the same job, set, restore and scheduler
figures, and they survive restarts; the in-process API figures are in
:mod:`rdsbackup.api.metrics`. Labels name instances by id and never by account (a
leaked scrape gives away no account name or key). docs/metrics.md lists every metric.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupJob,
    BackupSet,
    Instance,
    LogFileRecord,
    LogGap,
    LogStreamState,
    RestoreTask,
    ScheduledBackup,
)
from rdsbackup.states import BackupStatus, InstanceStatus, JobStatus, LogStreamStatus

log = logging.getLogger(__name__)

PREFIX = "rdsbackup_"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
"""Seconds: a small dump takes seconds, a large physical backup hours."""
SIZE_BUCKETS = tuple(float(1 << n) for n in range(20, 42, 2))
"""Bytes: 1 MiB to 1 TiB in powers of four."""


def _seconds(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class _Ended:
    instance_id: str
    status: str
    method: str
    engine: str
    started: datetime | None
    finished: datetime | None
    bytes_done: int

    @property
    def duration(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return max(0.0, (self.finished - self.started).total_seconds())


def _per_instance(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=("instance_id", "engine"))


def _histogram(
    name: str,
    documentation: str,
    labels: tuple[str, ...],
    samples: dict[tuple[str, ...], list[float]],
    buckets: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, values in sorted(samples.items()):
        counts = [(str(b), float(sum(1 for v in values if v <= b))) for b in buckets]
        counts.append(("+Inf", float(len(values))))
        family.add_metric(list(key), counts, sum(values))
    return family


class CatalogCollector(Collector):
    """Collected on every scrape (a handful of grouped queries)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def describe(self) -> Iterable[Metric]:
        return []  # collected from the catalog: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "catalog_up", "1 if the last scrape could read the catalog, else 0."
        )
        try:
            families = list(self._families())
        except Exception:
            log.exception("metrics: reading the catalog failed")
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        with self.catalog.read() as s:
            live = {
                row.id: row.engine
                for row in s.execute(
                    select(Instance.id, Instance.engine).where(
                        Instance.status != InstanceStatus.DELETED
                    )
                )
            }
            instances = s.execute(
                select(Instance.engine, Instance.status, func.count()).group_by(
                    Instance.engine, Instance.status
                )
            ).all()
            jobs = s.execute(
                select(
                    BackupJob.status,
                    BackupJob.method,
                    Instance.engine,
                    BackupJob.job_mode,
                    func.count(),
                )
                .join(Instance, Instance.id == BackupJob.instance_id)
                .group_by(BackupJob.status, BackupJob.method, Instance.engine, BackupJob.job_mode)
            ).all()
            ended = [
                _Ended(*row)
                for row in s.execute(
                    select(
                        BackupJob.instance_id,
                        BackupJob.status,
                        BackupJob.method,
                        Instance.engine,
                        BackupJob.started_at,
                        BackupJob.finished_at,
                        BackupJob.bytes_done,
                    )
                    .join(Instance, Instance.id == BackupJob.instance_id)
                    .where(
                        BackupJob.status.in_((JobStatus.FINISHED, JobStatus.FAILED)),
                        BackupJob.finished_at.is_not(None),
                    )
                    .order_by(BackupJob.finished_at, BackupJob.id)
                )
            ]
            sets = s.execute(
                select(
                    BackupSet.instance_id,
                    func.count(),
                    func.coalesce(func.sum(BackupSet.size), 0),
                    func.max(BackupSet.end_time),
                )
                .where(BackupSet.status == BackupStatus.SUCCESS, BackupSet.deleting_at.is_(None))
                .group_by(BackupSet.instance_id)
            ).all()
            restores = s.execute(
                select(RestoreTask.kind, RestoreTask.status, func.count()).group_by(
                    RestoreTask.kind, RestoreTask.status
                )
            ).all()
            schedule = s.execute(
                select(ScheduledBackup.status, func.count()).group_by(ScheduledBackup.status)
            ).all()
            streams: list[tuple[str, str, int, datetime | None]] = [
                (row.instance_id, row.status, row.restarts, row.last_durable_time)
                for row in s.execute(
                    select(
                        LogStreamState.instance_id,
                        LogStreamState.status,
                        LogStreamState.restarts,
                        LogStreamState.last_durable_time,
                    )
                )
            ]
            gaps: dict[str, int] = {
                row[0]: row[1]
                for row in s.execute(
                    select(LogGap.instance_id, func.count()).group_by(LogGap.instance_id)
                )
            }
            log_files = {
                row[0]: (row[1], row[2])
                for row in s.execute(
                    select(
                        LogFileRecord.instance_id,
                        func.count(),
                        func.coalesce(func.sum(LogFileRecord.size), 0),
                    )
                    .where(LogFileRecord.deleting_at.is_(None))
                    .group_by(LogFileRecord.instance_id)
                )
            }

        family = GaugeMetricFamily(
            PREFIX + "instances", "Instances in the catalog.", labels=("engine", "status")
        )
        for engine, status, count in instances:
            family.add_metric([engine, status], count)
        yield family

        family = GaugeMetricFamily(
            PREFIX + "backup_jobs",
            "Backup jobs in the catalog by BackupStatus (DescribeBackupTasks), method, "
            "engine and mode (Manual / Automated).",
            labels=("status", "method", "engine", "mode"),
        )
        for status, method, engine, mode, count in jobs:
            family.add_metric([status, method, engine, mode], count)
        yield family

        durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
        sizes: dict[tuple[str, ...], list[float]] = defaultdict(list)
        last: dict[str, _Ended] = {}
        last_good: dict[str, _Ended] = {}
        for job in ended:  # oldest first: the newest wins
            last[job.instance_id] = job
            if job.status == JobStatus.FINISHED:
                durations[(job.method, job.engine)].append(job.duration)
                sizes[(job.method, job.engine)].append(float(job.bytes_done))
                last_good[job.instance_id] = job
        yield _histogram(
            PREFIX + "backup_duration_seconds",
            "How long finished backup jobs took, start to end.",
            ("method", "engine"),
            durations,
            DURATION_BUCKETS,
        )
        yield _histogram(
            PREFIX + "backup_size_bytes",
            "Bytes finished backup jobs read (uncompressed size of their sets).",
            ("method", "engine"),
            sizes,
            SIZE_BUCKETS,
        )

        by_instance = {row[0]: row for row in sets}
        success = _per_instance(
            "backup_last_success_timestamp_seconds",
            "End time of the newest available successful backup set (0: none).",
        )
        count_family = _per_instance("backup_sets", "Available backup sets.")
        size_family = _per_instance(
            "backup_sets_stored_bytes",
            "Stored (compressed, encrypted) bytes of the available backup sets.",
        )
        error = _per_instance(
            "backup_last_error_status",
            "1 if the newest ended backup job of the instance failed, else 0.",
        )
        last_duration = _per_instance(
            "backup_last_duration_seconds", "Duration of the newest finished backup job."
        )
        last_size = _per_instance(
            "backup_last_size_bytes", "Bytes the newest finished backup job read (uncompressed)."
        )
        for instance_id, engine in sorted(live.items()):
            labels = [instance_id, engine]
            found = by_instance.get(instance_id)
            success.add_metric(labels, _seconds(found[3]) if found else 0.0)
            count_family.add_metric(labels, found[1] if found else 0)
            size_family.add_metric(labels, found[2] if found else 0)
            if instance_id in last:
                error.add_metric(labels, float(last[instance_id].status == JobStatus.FAILED))
            if instance_id in last_good:
                last_duration.add_metric(labels, last_good[instance_id].duration)
                last_size.add_metric(labels, last_good[instance_id].bytes_done)
        yield from (success, count_family, size_family, error, last_duration, last_size)

        family = GaugeMetricFamily(
            PREFIX + "restore_tasks",
            "Restore tasks (clone, database, verify) by status.",
            labels=("kind", "status"),
        )
        for kind, status, count in restores:
            family.add_metric([kind, status], count)
        yield family

        family = GaugeMetricFamily(
            PREFIX + "scheduled_backups",
            "The scheduler's decisions on policy backup slots by status.",
            labels=("status",),
        )
        for status, count in schedule:
            family.add_metric([status], count)
        yield family

        yield from _log_families(live, streams, gaps, log_files)


def _log_families(
    live: dict[str, str],
    streams: Sequence[tuple[str, str, int, datetime | None]],
    gaps: dict[str, int],
    log_files: dict[str, tuple[int, int]],
) -> Iterator[Metric]:
    """Log backups, for the instances whose stream ever ran: the status as a state set
    (alert on ``status="Broken"``), gaps, restarts and the newest durable commit."""
    status = GaugeMetricFamily(
        PREFIX + "log_backup_status",
        "1 for the log backup's current LogBackupStatus (Streaming, Restarting, Broken, "
        "Stopped), 0 for the others.",
        labels=("instance_id", "engine", "status"),
    )
    gap_family = _per_instance(
        "log_backup_gaps", "Gaps recorded in the instance's stored logs (times not restorable)."
    )
    restarts = _per_instance(
        "log_backup_restarts", "Times the streaming tool ended and was started again."
    )
    durable = _per_instance(
        "log_backup_last_durable_timestamp_seconds",
        "Commit time of the newest commit whose log is stored (0: none).",
    )
    files = _per_instance("log_files", "Stored log files (binlogs, WAL segments, history).")
    stored = _per_instance("log_files_stored_bytes", "Stored (compressed) bytes of log files.")
    for instance_id, state, restart_count, last_durable in sorted(streams):
        engine = live.get(instance_id)
        if engine is None:
            continue
        labels = [instance_id, engine]
        for each in LogStreamStatus:
            status.add_metric([*labels, each.value], float(state == each))
        gap_family.add_metric(labels, gaps.get(instance_id, 0))
        restarts.add_metric(labels, restart_count or 0)
        durable.add_metric(labels, _seconds(last_durable) if last_durable else 0.0)
        count, size = log_files.get(instance_id, (0, 0))
        files.add_metric(labels, count)
        stored.add_metric(labels, size)
    yield from (status, gap_family, restarts, durable, files, stored)
