"""The log shipper: streams the change log of every Running instance whose policy has
``EnableBackupLog`` on, and stores each complete file (:mod:`rdsbackup.jobs.logstore`).

One pass (:meth:`LogShipper.tick`, run every ``log_ship_interval_seconds``) does, per
instance: hold its lease (one node streams an instance, however many share the
catalog); start the engine's streamer if none runs, resuming after the newest stored
file; store what it reports complete and remove it from the spool; when the tool has
ended, note why (status Restarting) and start it again on a later pass, after a pause
that grows with each failure; and every ``log_switch_seconds`` close the server's
current log (``FLUSH BINARY LOGS``, ``pg_switch_wal()``) so an idle server's last
commits are stored within that bound.

The streaming tools do not reconnect by themselves; a restart resumes from the
successor of the newest stored file. When that file is gone from the server (purged
while the service was away) every resume fails: after ``RESUME_TRIES`` failed starts
in a row the streamer is started from the server's oldest log instead, and the jump in
sequence is recorded as a gap - reported, never silent.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupPolicy, BackupSet, Instance, LogGap, LogStreamState
from rdsbackup.engines.base import EngineError, ServerAccess
from rdsbackup.engines.logs import LogEngine, LogFile, LogStreamer
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.instances.inventory import Inventory
from rdsbackup.jobs.logstore import LogRefused, LogStore
from rdsbackup.logs import log_context
from rdsbackup.states import BackupStatus, InstanceStatus, LogGapKind, LogStreamStatus
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)

RESUME_TRIES = 3
"""Failed starts in a row (no file reported) before resuming from the server's oldest log."""
MAX_PAUSE_SECONDS = 30.0
SWITCHED_OFF = "log backup is off"
NOT_RUNNING = "the instance is not Running"


class StreamLease(Protocol):
    """One instance's stream lease (``service.lease.NamedLease``)."""

    def hold(self) -> bool: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class ShipOptions:
    spool_dir: Path
    switch_seconds: float = 60.0
    """Close an idle server's current log this often (the loss window's bound)."""
    restart_seconds: float = 1.0
    """The first pause before restarting an ended tool; doubled per failure."""


@dataclass
class _Stream:
    engine: LogEngine
    access: ServerAccess
    streamer: LogStreamer
    last_switch: float
    files: int = 0


@dataclass
class _Retry:
    failures: int = 0
    not_before: float = 0.0


@dataclass
class LogShipper:
    catalog: Catalog
    inventory: Inventory
    engines: EngineRegistry
    store: LogStore
    lease: Callable[[str], StreamLease]
    """The lease of one instance's stream, by instance id."""
    options: ShipOptions
    _streams: dict[str, _Stream] = field(default_factory=dict)
    _retries: dict[str, _Retry] = field(default_factory=dict)

    def tick(self) -> None:
        wanted = self._wanted()
        for instance_id in [i for i in self._streams if i not in wanted]:
            self._close(instance_id)
            self._set_state(instance_id, LogStreamStatus.STOPPED, NOT_RUNNING)
        for instance_id in self._switched_off():
            self._close(instance_id)
            self._release(instance_id)
            self._set_state(instance_id, LogStreamStatus.STOPPED, SWITCHED_OFF)
        for instance_id in wanted:
            with log_context(DBInstanceId=instance_id):
                try:
                    self._ship(instance_id)
                except Exception as e:
                    log.exception("log shipping of %s failed", instance_id)
                    self._close(instance_id)
                    self._failed(instance_id, str(e) or type(e).__name__)

    def stop(self) -> None:
        """Stop every streamer (files not yet complete stay in the spool) and give the
        leases up, so another node takes over at once."""
        for instance_id in list(self._streams):
            self._close(instance_id)
            self.lease(instance_id).release()

    # -- one instance -----------------------------------------------------------------

    def _ship(self, instance_id: str) -> None:
        if not self.lease(instance_id).hold():
            self._close(instance_id)  # another node took it over
            return
        stream = self._streams.get(instance_id) or self._open(instance_id)
        if stream is None:
            return
        for file in stream.streamer.completed():
            self._store(instance_id, stream, file)
        why = stream.streamer.exited()
        if why is not None:
            self._close(instance_id)
            self._failed(instance_id, why)
            return
        if time.monotonic() - stream.last_switch >= self.options.switch_seconds:
            stream.last_switch = time.monotonic()
            try:
                stream.engine.switch_log(stream.access)
            except EngineError as e:
                log.warning("closing the current log of %s failed: %s", instance_id, e)

    def _open(self, instance_id: str) -> _Stream | None:
        retry = self._retries.setdefault(instance_id, _Retry())
        if time.monotonic() < retry.not_before:
            return None
        with self.catalog.read() as s:
            engine_name = s.get_one(Instance, instance_id).engine
        engine = self.engines.for_engine(engine_name)
        assert isinstance(engine, LogEngine)
        access = self.inventory.access(instance_id)
        engine.check_log_source(access)
        spool = self.options.spool_dir / instance_id
        spool.mkdir(parents=True, exist_ok=True)
        resume = self.store.last(instance_id)
        if resume is not None and retry.failures >= RESUME_TRIES:
            log.warning(
                "%s: resuming after %s failed %d times; starting at the server's oldest log",
                instance_id,
                resume.name,
                retry.failures,
            )
            resume = None
        streamer = engine.log_streamer(access, spool, resume)
        streamer.start()
        stream = _Stream(engine, access, streamer, last_switch=time.monotonic())
        self._streams[instance_id] = stream
        self._set_state(instance_id, LogStreamStatus.STREAMING, "", keep_broken=True)
        return stream

    def _store(self, instance_id: str, stream: _Stream, file: LogFile) -> None:
        try:
            result = self.store.store(instance_id, file)
        except LogRefused as e:
            rejected = file.path.with_name(file.path.name + ".rejected")
            shutil.move(file.path, rejected)
            log.error("%s: %s (kept as %s)", instance_id, e, rejected)
            self._refused(instance_id, file, str(e))
            return
        file.path.unlink(missing_ok=True)
        stream.files += 1
        self._retries[instance_id] = _Retry()
        if result.gap is not None:
            log.error("%s: log gap: %s", instance_id, result.gap.reason)
            self._set_state(instance_id, LogStreamStatus.BROKEN, result.gap.reason)
        self._advance(instance_id, file)

    def _refused(self, instance_id: str, file: LogFile, why: str) -> None:
        last = self.store.last(instance_id)
        now = utcnow()
        with self.catalog.write() as s:
            s.add(
                LogGap(
                    instance_id=instance_id,
                    timeline=file.timeline,
                    after_file=last.name if last else "",
                    before_file=file.name,
                    from_time=(last.last_time if last else None) or now,
                    to_time=file.first_time.replace(tzinfo=None) if file.first_time else now,
                    reason=why,
                    kind=LogGapKind.REFUSED,
                    detected_at=now,
                )
            )
            state = _state(s, instance_id)
            state.status, state.reason, state.updated_at = LogStreamStatus.BROKEN, why, now

    def _failed(self, instance_id: str, why: str) -> None:
        retry = self._retries.setdefault(instance_id, _Retry())
        retry.failures += 1
        pause = min(MAX_PAUSE_SECONDS, self.options.restart_seconds * 2 ** (retry.failures - 1))
        retry.not_before = time.monotonic() + pause
        log.warning("%s: log streaming ended: %s; restarting in %.0f s", instance_id, why, pause)
        with self.catalog.write() as s:
            state = _state(s, instance_id)
            state.restarts += 1
            if state.status != LogStreamStatus.BROKEN:
                state.status, state.reason = LogStreamStatus.RESTARTING, why[:2000]
            state.updated_at = utcnow()

    def _close(self, instance_id: str) -> None:
        stream = self._streams.pop(instance_id, None)
        if stream is not None:
            stream.streamer.stop()

    # -- catalog ----------------------------------------------------------------------

    def _wanted(self) -> set[str]:
        """Running instances whose policy keeps log backups and whose engine streams."""
        with self.catalog.read() as s:
            rows = s.execute(
                select(Instance.id, Instance.engine)
                .join(BackupPolicy, BackupPolicy.instance_id == Instance.id)
                .where(
                    BackupPolicy.enable_backup_log.is_(True),
                    Instance.status == InstanceStatus.RUNNING,
                )
            ).all()
        return {i for i, engine in rows if isinstance(self._engine(engine), LogEngine)}

    def _switched_off(self) -> list[str]:
        """Instances with a stream state whose policy no longer keeps log backups (and
        whose stream has not yet been released)."""
        with self.catalog.read() as s:
            return list(
                s.scalars(
                    select(LogStreamState.instance_id)
                    .outerjoin(BackupPolicy, BackupPolicy.instance_id == LogStreamState.instance_id)
                    .where(
                        or_(BackupPolicy.instance_id.is_(None), ~BackupPolicy.enable_backup_log),
                        or_(
                            LogStreamState.status != LogStreamStatus.STOPPED,
                            LogStreamState.reason != SWITCHED_OFF,
                        ),
                    )
                )
            )

    def _release(self, instance_id: str) -> None:
        """Best effort: PostgreSQL's slot would keep WAL on the server forever."""
        try:
            with self.catalog.read() as s:
                engine = self._engine(s.get_one(Instance, instance_id).engine)
            if isinstance(engine, LogEngine):
                spool = self.options.spool_dir / instance_id
                engine.release_log_source(self.inventory.access(instance_id), spool)
        except Exception as e:
            log.warning("%s: releasing the log stream's server side failed: %s", instance_id, e)

    def _engine(self, engine: str) -> object:
        try:
            return self.engines.for_engine(engine)
        except KeyError:
            return None

    def _advance(self, instance_id: str, file: LogFile) -> None:
        with self.catalog.write() as s:
            state = _state(s, instance_id)
            state.last_file = file.name
            when = file.last_time
            if when is not None:
                when = when.replace(tzinfo=None)
                if state.last_durable_time is None or when > state.last_durable_time:
                    state.last_durable_time = when
            if state.status == LogStreamStatus.RESTARTING or (
                state.status == LogStreamStatus.BROKEN and not _still_broken(s, state)
            ):
                state.status, state.reason = LogStreamStatus.STREAMING, ""
            state.updated_at = utcnow()

    def _set_state(
        self, instance_id: str, status: LogStreamStatus, reason: str, *, keep_broken: bool = False
    ) -> None:
        with self.catalog.write() as s:
            state = _state(s, instance_id)
            if keep_broken and state.status == LogStreamStatus.BROKEN and _still_broken(s, state):
                return
            state.status, state.reason = status, reason[:2000]
            state.owner = None if status == LogStreamStatus.STOPPED else state.owner
            state.updated_at = utcnow()


def _state(s: Session, instance_id: str) -> LogStreamState:
    state = s.get(LogStreamState, instance_id)
    if state is None:
        state = LogStreamState(instance_id=instance_id, status=LogStreamStatus.STOPPED)
        s.add(state)
        state.restarts, state.reason, state.last_file = 0, "", ""
    return state


def _still_broken(s: Session, state: LogStreamState) -> bool:
    """A gap stays an alarm until a base set is taken after it."""
    newest_gap = s.scalar(
        select(func.max(LogGap.detected_at)).where(LogGap.instance_id == state.instance_id)
    )
    if newest_gap is None:
        return False
    newer_set = s.scalar(
        select(func.count(BackupSet.id)).where(
            BackupSet.instance_id == state.instance_id,
            BackupSet.status == BackupStatus.SUCCESS,
            BackupSet.consistent_time > newest_gap,
        )
    )
    return not newer_set
