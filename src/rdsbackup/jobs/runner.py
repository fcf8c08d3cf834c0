"""Running one backup job through the API's phases.

NoStart -> Checking (probe the server) -> Preparing (fix the plan, measure the data)
-> Uploading (the engine's tools stream through zstd + sha256 into storage) ->
Finished, or Failed with the reason. The set's catalog record, its objects and the
job's Finished status are written in one transaction, after ``manifest.json`` is
stored: a job never shows Finished unless its set is complete. A failed job removes
what it wrote and records a Failed set that says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update

from rdsbackup.catalog.db import Catalog, affected
from rdsbackup.catalog.models import (
    BackupJob,
    BackupObject,
    BackupSet,
    Instance,
    encrypts_backups,
    join_names,
    policy_for,
)
from rdsbackup.engines.base import BackupPlan, BackupResult, EngineError
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.instances.inventory import Inventory
from rdsbackup.jobs.leases import STOPPED, Heartbeat, Leases
from rdsbackup.jobs.planning import Parent, Planner
from rdsbackup.logs import log_context
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.states import (
    JOB_PROGRESSING,
    BackupInitiator,
    BackupMode,
    BackupStatus,
    FingerprintSource,
    JobStatus,
    MetaStatus,
)
from rdsbackup.storage.base import Storage
from rdsbackup.storage.keys import Keyring, SetKey, describe_encryption
from rdsbackup.storage.streams import SetWriter
from rdsbackup.timeutil import to_wire, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    compression: str = "zstd"
    compression_level: int = 1
    compression_threads: int = 2
    parallel: int = 2
    heartbeat_seconds: float = 1.0
    fingerprint: bool = False
    snapshot_reflink: bool = True
    encrypt_backups: bool = False
    """Encrypt the sets of instances whose policy does not say (``backup_encryption``)."""
    keyring: Keyring | None = None
    """Key-encryption keys; None: no set can be encrypted (a job asked to fails)."""


PROCESS_STEP = 10
"""Process is recorded early (before the next heartbeat) once it moved this many points."""

ENGINE_PHASES = (JobStatus.PREPARING, JobStatus.WAITING, JobStatus.UPLOADING, JobStatus.CHECKING)
"""The order of the phases an engine may report once the job is running."""


class JobFailed(Exception):
    pass


class LeaseLost(JobFailed):
    pass


class _Progress:
    """Bytes read so far against the expected total, as the heartbeat records them."""

    def __init__(self) -> None:
        self.writer: SetWriter | None = None
        self.expected = 0

    def values(self) -> dict[str, object]:
        if self.writer is None:
            return {}
        done = self.writer.raw_bytes
        process = min(99, done * 100 // self.expected) if self.expected > 0 else 0
        return {"bytes_done": done, "process": process}


class JobRunner:
    def __init__(
        self,
        catalog: Catalog,
        inventory: Inventory,
        engines: EngineRegistry,
        storage: Storage,
        leases: Leases,
        planner: Planner,
        options: RunOptions,
    ) -> None:
        self.catalog = catalog
        self.inventory = inventory
        self.engines = engines
        self.storage = storage
        self.leases = leases
        self.planner = planner
        self.options = options

    def run(self, job_id: int) -> None:
        if not self.leases.claim(job_id):
            return
        job = self._job(job_id)
        with log_context(BackupJobId=job_id, DBInstanceId=job.instance_id):
            self._run_claimed(job)

    def _run_claimed(self, job: BackupJob) -> None:
        job_id = job.id
        prefix = f"{job.instance_id}/{job.id}/"
        progress = _Progress()
        try:
            with Heartbeat(
                self.leases,
                job_id,
                self.options.heartbeat_seconds,
                progress.values,
                process_step=PROCESS_STEP,
            ) as heartbeat:
                self._run(job, prefix, progress, heartbeat)
        except Exception as e:
            reason = e.reason if isinstance(e, EngineError) else str(e) or type(e).__name__
            if self.leases.stopping.is_set():  # its tools were killed: that is why
                reason = STOPPED
            elif not isinstance(e, (EngineError, JobFailed)):
                log.exception("job %s failed unexpectedly", job_id)
            self.fail(job_id, prefix, reason)

    def _run(self, job: BackupJob, prefix: str, progress: _Progress, heartbeat: Heartbeat) -> None:
        started = utcnow()
        engine = self.engines.for_engine(self.inventory.engine_name(job.instance_id))
        if self.inventory.probe(job.instance_id) is None:
            raise JobFailed(f"the instance is not answering: {self._status_reason(job)}")
        self._phase(job.id, JobStatus.PREPARING)
        access = self.inventory.access(job.instance_id)
        resolved = self.planner.resolve(job, engine, access, self.options.parallel)
        plan, parent = resolved.plan, resolved.parent
        plan = replace(
            plan,
            fingerprint=plan.fingerprint or self.options.fingerprint,
            reflink=self.options.snapshot_reflink,
        )
        engine.check_plan(plan, access)
        progress.expected = engine.expected_bytes(access, plan)
        set_key = self._set_key(job.instance_id)
        self._phase(
            job.id,
            JobStatus.UPLOADING,
            storage_prefix=prefix,
            kind=plan.kind.value,
            bytes_expected=progress.expected,
        )
        writer = SetWriter(
            self.storage,
            prefix,
            compression=job.compression or self.options.compression,
            level=self.options.compression_level,
            threads=self.options.compression_threads,
            encryption=set_key,
        )
        progress.writer = writer
        result = engine.backup(
            access, plan, writer, self._forward_only(job.id, JobStatus.UPLOADING)
        )
        if heartbeat.lost.is_set():
            raise LeaseLost("the job's lease was lost while it ran")
        manifest = self._manifest(job, plan, parent, result, writer, started)
        data = manifest.to_json()
        self.storage.write_bytes(prefix + MANIFEST_NAME, data)
        self._finish(job, plan, parent, manifest, hashlib.sha256(data).hexdigest(), result, started)
        log.info("backup job %s finished: %d bytes stored", job.id, manifest.size)

    def _manifest(
        self,
        job: BackupJob,
        plan: BackupPlan,
        parent: Parent | None,
        result: BackupResult,
        writer: SetWriter,
        started: datetime,
    ) -> Manifest:
        return Manifest(
            instance_id=job.instance_id,
            engine=self.inventory.engine_name(job.instance_id),
            engine_version=result.engine_version,
            method=plan.method.value,
            kind=plan.kind.value,
            strategy=plan.strategy.value,
            databases=result.databases,
            objects=sorted(writer.objects, key=lambda o: o.name),
            started_at=to_wire(started),
            finished_at=to_wire(utcnow()),
            tool_versions=result.tool_versions,
            consistent_position=result.consistent_position,
            consistent_time=to_wire(result.consistent_time) if result.consistent_time else None,
            extra=result.extra,
            compression={"algorithm": writer.compression, "level": str(writer.level)},
            parent_backup_id=str(parent.backup_id) if parent else None,
            chain=parent.chain if parent else [],
            encryption=writer.encryption.manifest_fields() if writer.encryption else {},
        )

    def _set_key(self, instance_id: str) -> SetKey | None:
        """A new data key when the instance's policy (else the setting) encrypts its
        sets: wrapped by the key its policy names, else by the active key."""
        with self.catalog.read() as s:
            policy = policy_for(s, instance_id)
            wanted = encrypts_backups(policy, self.options.encrypt_backups)
            key_id = policy.encryption_key_id
        if not wanted:
            return None
        keyring = self.options.keyring
        if keyring is None:
            raise JobFailed("backup encryption is on but no encryption keys are configured")
        if key_id and not keyring.has(key_id):
            raise JobFailed(f"the backup encryption key {key_id!r} is not configured")
        return keyring.new_set_key(key_id or None)

    def _finish(
        self,
        job: BackupJob,
        plan: BackupPlan,
        parent: Parent | None,
        manifest: Manifest,
        checksum: str,
        result: BackupResult,
        started: datetime,
    ) -> None:
        now = utcnow()
        with self.catalog.write() as s:
            backup = BackupSet(
                instance_id=job.instance_id,
                account_id=job.account_id,
                job_id=job.id,
                status=BackupStatus.SUCCESS,
                method=plan.method.value,
                kind=plan.kind.value,
                mode=job.job_mode,
                initiator=_initiator(job),
                strategy=plan.strategy.value,
                db_names=join_names(result.databases),
                start_time=started,
                end_time=now,
                size=manifest.size,
                raw_size=sum(o.raw_size for o in manifest.objects),
                storage_prefix=f"{job.instance_id}/{job.id}/",
                checksum=checksum,
                consistent_time=result.consistent_time or now,
                consistent_position=json.dumps(result.consistent_position),
                engine=manifest.engine,
                engine_version=result.engine_version,
                host_instance_id=job.instance_id,
                retention_days=job.retention_days,
                expire_time=_expiry(now, job.retention_days),
                parent_id=parent.backup_id if parent else None,
                fingerprints=_json_or_empty(result.fingerprints),
                fingerprint_source="" if result.fingerprints is None else FingerprintSource.BACKUP,
                encryption=describe_encryption(manifest.encryption.get("key_id")),
                encryption_key_id=manifest.encryption.get("key_id", ""),
                wrapped_data_key=manifest.encryption.get("wrapped_key", ""),
                objects=[
                    BackupObject(
                        name=o.name,
                        size=o.size,
                        raw_size=o.raw_size,
                        sha256=o.sha256,
                        compression=o.compression,
                    )
                    for o in manifest.objects
                ],
            )
            s.add(backup)
            s.flush()
            done = s.execute(
                update(BackupJob)
                .where(
                    BackupJob.id == job.id,
                    BackupJob.lease_owner == self.leases.owner,
                    BackupJob.status.in_(JOB_PROGRESSING),
                )
                .values(
                    status=JobStatus.FINISHED,
                    progress_status=JobStatus.FINISHED,
                    process=100,
                    finished_at=now,
                    backup_id=backup.id,
                    lease_owner=None,
                    bytes_done=backup.raw_size,
                )
            )
            if affected(done) != 1:
                raise LeaseLost("the job was failed by another worker before it could finish")

    def fail(self, job_id: int, prefix: str, reason: str) -> None:
        """Record a failure: remove what was written, fail the job, keep a Failed set."""
        log.warning("job %s failed: %s", job_id, reason)
        try:
            self.storage.delete_prefix(prefix)
        except Exception:
            log.exception("job %s: removing partial objects under %s failed", job_id, prefix)
        record_failure(self.catalog, job_id, reason, owner=self.leases.owner)

    def _phase(self, job_id: int, phase: str, **values: object) -> None:
        if not self.leases.renew(job_id, status=phase, progress_status=phase, **values):
            raise LeaseLost("the job's lease was lost")

    def _forward_only(self, job_id: int, current: str) -> Callable[[str], None]:
        """The engine's phase reports, kept only when they move the job forward: the
        status a client polls never goes back (Uploading -> Preparing)."""
        seen = [ENGINE_PHASES.index(current)]

        def report(phase: str) -> None:
            if phase in ENGINE_PHASES and ENGINE_PHASES.index(phase) > seen[0]:
                seen[0] = ENGINE_PHASES.index(phase)
                self._phase(job_id, phase)

        return report

    def _job(self, job_id: int) -> BackupJob:
        with self.catalog.read() as s:
            return s.get_one(BackupJob, job_id)

    def _status_reason(self, job: BackupJob) -> str:
        with self.catalog.read() as s:
            instance = s.get_one(Instance, job.instance_id)
            return instance.status_reason or instance.status


def record_failure(catalog: Catalog, job_id: int, reason: str, *, owner: str | None) -> None:
    """Fail the job (if ``owner`` still holds it, or unconditionally when None) and add a
    Failed backup set carrying the reason, so DescribeBackups shows it too."""
    now = utcnow()
    with catalog.write() as s:
        job = s.get_one(BackupJob, job_id)
        if owner is not None and job.lease_owner != owner:
            return
        if job.status == JobStatus.FINISHED:
            return
        existing = s.scalar(select(BackupSet.id).where(BackupSet.job_id == job_id))
        if existing is None:
            instance = s.get_one(Instance, job.instance_id)
            failed = BackupSet(
                instance_id=job.instance_id,
                account_id=job.account_id,
                job_id=job.id,
                status=BackupStatus.FAILED,
                method=job.method,
                kind=job.kind,
                mode=job.job_mode,
                initiator=_initiator(job),
                strategy=job.strategy,
                db_names=job.db_names,
                start_time=job.started_at or job.created_at,
                end_time=now,
                size=0,
                engine=instance.engine,
                engine_version=instance.engine_version,
                host_instance_id=job.instance_id,
                is_avail=False,
                meta_status=MetaStatus.EMPTY,
                failed_reason=reason,
                retention_days=job.retention_days,
                expire_time=_expiry(now, job.retention_days),
            )
            s.add(failed)
            s.flush()
            existing = failed.id
        job.status = job.progress_status = JobStatus.FAILED
        job.failed_reason = job.failed_reason or reason
        job.finished_at = job.finished_at or now
        job.lease_owner = None
        job.backup_id = existing


def _initiator(job: BackupJob) -> BackupInitiator:
    manual = job.job_mode == BackupMode.MANUAL
    return BackupInitiator.USER if manual else BackupInitiator.SYSTEM


def _expiry(start: datetime, days: int | None) -> datetime | None:
    return None if days is None or days < 0 else start + timedelta(days=days)


def _json_or_empty(value: object | None) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True)
