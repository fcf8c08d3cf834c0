"""Running restore tasks: clones, one database into a running instance, verifications.

Every restore reads the set (and, for an incremental, its whole chain) through the
verifying reader: a corrupt object stops it with the object's name. A clone's server is
marked Running only after its data is in place; a failed clone is left ``Failed`` with
the reason, its server stopped and its data removed. Restoring one database into an
instance goes through a scratch server and a logical copy, so the target's other
databases are never touched.

A verification compares the restored tables' row counts and checksums with the set's
fingerprints: those taken at backup time as of its consistent point (setting
``fingerprint_backups``), or else those its first successful verification recorded.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet, Instance, RestoreTask, split_names
from rdsbackup.engines.admin import admin_for
from rdsbackup.engines.base import BackupMethod, Engine, EngineError, StoredSet
from rdsbackup.engines.logs import LogEngine, RecoveryTarget
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.instances.inventory import Inventory
from rdsbackup.instances.ports import free_port
from rdsbackup.instances.servers import LocalServer, local_server
from rdsbackup.instances.supervisor import Supervisor
from rdsbackup.jobs.leases import STOPPED, Heartbeat, Leases
from rdsbackup.jobs.logchain import NoRecovery
from rdsbackup.jobs.logchain import plan as recovery_plan
from rdsbackup.jobs.logstore import LogRefused, LogStore
from rdsbackup.jobs.sets import SetStore, SetUnavailable
from rdsbackup.logs import log_context
from rdsbackup.states import (
    FingerprintSource,
    InstanceStatus,
    RestoreKind,
    RestoreStatus,
    VerifyStatus,
)
from rdsbackup.storage.base import StorageError
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingRecovery:
    """A point-in-time restore's engine and its log files, being fetched."""

    engine: LogEngine
    fetched: Future[RecoveryTarget]

    def target(self) -> RecoveryTarget:
        """Waits for the fetch (and raises what it raised)."""
        return self.fetched.result()


class RestoreRunner:
    def __init__(
        self,
        catalog: Catalog,
        inventory: Inventory,
        supervisor: Supervisor,
        engines: EngineRegistry,
        sets: SetStore,
        leases: Leases,
        scratch_dir: Path,
        heartbeat_seconds: float,
        log_store: LogStore | None = None,
    ) -> None:
        self.catalog = catalog
        self.inventory = inventory
        self.supervisor = supervisor
        self.engines = engines
        self.sets = sets
        self.leases = leases
        self.scratch_dir = scratch_dir
        self.heartbeat_seconds = heartbeat_seconds
        self.log_store = log_store

    def run(self, task_id: int) -> None:
        if not self.leases.claim(task_id):
            return
        with self.catalog.read() as s:
            task = s.get_one(RestoreTask, task_id)
        with log_context(
            RestoreTaskId=task_id, BackupId=task.backup_id, DBInstanceId=task.source_instance_id
        ):
            self._run_claimed(task)

    def _run_claimed(self, task: RestoreTask) -> None:
        task_id = task.id
        steps: dict[str, Callable[[RestoreTask], None]] = {
            RestoreKind.CLONE: self._clone,
            RestoreKind.DATABASE: self._restore_database,
            RestoreKind.VERIFY: self._verify,
        }
        try:
            with Heartbeat(self.leases, task_id, self.heartbeat_seconds):
                steps[task.kind](task)
            self._end(task_id, RestoreStatus.FINISHED, "")
        except Exception as e:
            reason = _reason(e)
            if self.leases.stopping.is_set():  # its tools were killed: that is why
                reason = STOPPED
            elif not isinstance(e, (EngineError, SetUnavailable, StorageError, LogRefused)):
                log.exception("restore task %s failed unexpectedly", task_id)
            log.warning("restore task %s failed: %s", task_id, reason)
            self._end(task_id, RestoreStatus.FAILED, reason)
            if task.kind == RestoreKind.CLONE and task.target_instance_id:
                self.fail_clone(task.target_instance_id, reason)

    def reap(self) -> None:
        """Fail restores whose worker died; a dead clone's instance is failed too."""
        for dead in self.leases.reap():
            with self.catalog.read() as s:
                task = s.get_one(RestoreTask, dead.id)
            if task.kind == RestoreKind.CLONE and task.target_instance_id:
                self.fail_clone(task.target_instance_id, dead.reason)

    def fail_running(self, reason: str = STOPPED) -> list[int]:
        """Fail the restore tasks this process still runs (it is stopping)."""
        failed = self.leases.fail_own(reason)
        for task in failed:
            log.warning("restore task %s failed: %s", task.id, reason)
        return [t.id for t in failed]

    def fail_abandoned_clones(self, task_ids: list[int], reason: str = STOPPED) -> None:
        """Clones of failed tasks whose worker did not clean up (it is still stuck)."""
        for task_id in task_ids:
            with self.catalog.read() as s:
                task = s.get_one(RestoreTask, task_id)
            target = task.target_instance_id
            if task.kind == "clone" and target and self.inventory.status(target) == "Creating":
                self.fail_clone(target, reason)

    def fail_clone(self, instance_id: str, reason: str) -> None:
        self.inventory.set_status(instance_id, InstanceStatus.FAILED, reason)
        try:
            server = self.supervisor.server(instance_id)
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
        except Exception:
            log.exception("cleaning up the failed clone %s failed", instance_id)

    # -- the three kinds ----------------------------------------------------------------

    def _clone(self, task: RestoreTask) -> None:
        target = task.target_instance_id
        assert target is not None
        chain = self.sets.chain(task.backup_id)
        engine = self._engine(task.source_instance_id)
        server = self.supervisor.server(target)
        databases = split_names(task.db_names)
        with self._recovery(task, engine, chain[-1]) as recovery:
            # a replay may touch every database: load them all, drop the others after
            self._materialise(chain, engine, server, [] if recovery else databases, recovery)
        if databases and (recovery or _is_physical(chain[-1])):
            admin = admin_for(engine.family)
            for name in admin.user_databases(server.access()):
                if name not in databases:
                    admin.drop_database(server.access(), name)
        self.inventory.set_status(target, InstanceStatus.RUNNING)
        self.inventory.probe(target)

    def _restore_database(self, task: RestoreTask) -> None:
        target = task.target_instance_id
        assert target is not None
        chain = self.sets.chain(task.backup_id)
        engine = self._engine(task.source_instance_id)
        (name,) = split_names(task.db_names)
        target_access = self.inventory.access(target)
        admin = admin_for(engine.family)
        if task.target_db_name in admin.user_databases(target_access):
            raise EngineError(f"database {task.target_db_name!r} already exists on {target}")
        with (
            self._scratch(engine.family, task.source_instance_id) as scratch,
            self._recovery(task, engine, chain[-1]) as recovery,
        ):
            self._materialise(chain, engine, scratch, [] if recovery else [name], recovery)
            admin.copy_database(scratch.access(), name, target_access, task.target_db_name)
        self.inventory.probe(target)

    def _verify(self, task: RestoreTask) -> None:
        started = time.monotonic()
        chain = self.sets.chain(task.backup_id)
        engine = self._engine(task.source_instance_id)
        admin = admin_for(engine.family)
        try:
            with self._scratch(engine.family, task.source_instance_id) as scratch:
                self._materialise(chain, engine, scratch, [])
                seconds = time.monotonic() - started
                databases = admin.user_databases(scratch.access())
                problems = admin.check(scratch.access(), databases)
                found = admin.fingerprint(scratch.access(), databases)
        except (EngineError, SetUnavailable, StorageError) as e:
            self._record_verify(task.backup_id, VerifyStatus.FAILED, _reason(e), None, None)
            raise
        self._compare(task.backup_id, problems, found, seconds)

    def _compare(
        self, backup_id: int, problems: list[str], found: dict[str, list[object]], seconds: float
    ) -> None:
        with self.catalog.read() as s:
            recorded = s.get_one(BackupSet, backup_id).fingerprints
        expected = json.loads(recorded) if recorded else None
        if expected is not None and expected != found:
            differing = sorted(
                k for k in set(expected) | set(found) if expected.get(k) != found.get(k)
            )
            problems.append(
                "tables differ from the recorded fingerprint: " + ", ".join(differing[:10])
            )
        status = VerifyStatus.FAILED if problems else VerifyStatus.PASSED
        reference = json.dumps(found, sort_keys=True) if expected is None and not problems else None
        self._record_verify(backup_id, status, "; ".join(problems), seconds, reference)
        if problems:
            raise EngineError("verification failed: " + "; ".join(problems)[:1000])

    def _record_verify(
        self, backup_id: int, status: str, reason: str, seconds: float | None, reference: str | None
    ) -> None:
        with self.catalog.write() as s:
            backup = s.get_one(BackupSet, backup_id)
            backup.verify_status, backup.verify_reason = status, reason
            backup.verified_at = utcnow()
            if seconds is not None:
                backup.restore_seconds = round(seconds, 3)
            if reference is not None:
                backup.fingerprints, backup.fingerprint_source = reference, FingerprintSource.VERIFY

    # -- helpers --------------------------------------------------------------------------

    def _materialise(
        self,
        chain: list[StoredSet],
        engine: Engine,
        server: LocalServer,
        databases: list[str],
        recovery: PendingRecovery | None = None,
    ) -> None:
        last = chain[-1]
        physical = _is_physical(last)
        started = time.monotonic()
        if physical:
            server.create_dirs()
            engine.restore_physical(last.manifest, last.source, server.data_dir, chain[:-1])
            if recovery is not None:
                recovery.engine.prepare_recovery(server.data_dir, recovery.target())
            placed = time.monotonic()
            server.start()
        else:
            server.initialize()
            server.start()
            placed = time.monotonic()
            engine.restore_logical(last.manifest, last.source, server.access(), tuple(databases))
        if recovery is not None:
            target = recovery.target()
            replay = time.monotonic()
            recovery.engine.finish_recovery(server.access(), target)
            log.info(
                "replayed %d log files to %s in %.2f s",
                len(target.logs),
                target.time.isoformat(),
                time.monotonic() - replay,
            )
        log.info(
            "%s set of %s restored into %s: %s in %.2f s, then %s in %.2f s",
            last.manifest.method,
            last.manifest.instance_id,
            server.data_dir,
            "data in place" if physical else "server initialised",
            placed - started,
            "server started" if physical else "data loaded",
            time.monotonic() - placed,
        )

    @contextmanager
    def _recovery(
        self, task: RestoreTask, engine: Engine, base: StoredSet
    ) -> Iterator[PendingRecovery | None]:
        """For a point-in-time task: its log files fetched (verified) into a scratch
        folder while the base set is restored, removed afterwards."""
        if task.restore_time is None:
            yield None
            return
        if not isinstance(engine, LogEngine) or self.log_store is None:
            raise EngineError("this service cannot replay logs of this engine")
        with self.catalog.read() as s:
            try:
                chosen = recovery_plan(
                    s, task.source_instance_id, task.restore_time, engine.base_log, task.backup_id
                )
            except NoRecovery as e:
                raise EngineError(f"the logs to {task.restore_time:%Y-%m-%dT%H:%M:%SZ}: {e}") from e
            records = chosen.logs
            s.expunge_all()  # read after the session: every column is loaded
        log_dir = self.scratch_dir / f"logs-{task.id}-{uuid.uuid4().hex[:8]}"
        store, when = self.log_store, task.restore_time.replace(tzinfo=UTC)
        position = dict(base.manifest.consistent_position)

        def fetch() -> RecoveryTarget:
            return RecoveryTarget(when, log_dir, tuple(store.fetch(records, log_dir)), position)

        try:
            with ThreadPoolExecutor(1, thread_name_prefix="log-prefetch") as pool:
                yield PendingRecovery(engine, pool.submit(fetch))
        finally:  # the pool has waited for the fetch
            shutil.rmtree(log_dir, ignore_errors=True)

    @contextmanager
    def _scratch(self, family: str, source_instance_id: str) -> Iterator[LocalServer]:
        """A throw-away local server with the source's admin account."""
        source = self.inventory.access(source_instance_id)
        base = self.scratch_dir / f"scratch-{uuid.uuid4().hex[:12]}"
        server = local_server(family, base, free_port(), source.user, source.password)
        try:
            yield server
        finally:
            try:
                server.stop()
            finally:
                shutil.rmtree(base, ignore_errors=True)

    def _engine(self, instance_id: str) -> Engine:
        with self.catalog.read() as s:
            return self.engines.for_engine(s.get_one(Instance, instance_id).engine)

    def _end(self, task_id: int, status: str, reason: str) -> None:
        with self.catalog.write() as s:
            task = s.get_one(RestoreTask, task_id)
            if task.lease_owner != self.leases.owner:
                return
            task.status, task.failed_reason = status, reason
            task.finished_at = utcnow()
            task.lease_owner = None


def _is_physical(stored: StoredSet) -> bool:
    return stored.manifest.method in (BackupMethod.PHYSICAL, BackupMethod.SNAPSHOT)


def _reason(e: Exception) -> str:
    if isinstance(e, EngineError):
        return e.reason
    return str(e) or type(e).__name__
