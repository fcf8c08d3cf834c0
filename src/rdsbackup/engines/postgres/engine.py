"""The PostgreSQL engine.

Tools driven (found through ``pg_config --bindir`` or ``/usr/lib/postgresql/*/bin``):

* ``pg_basebackup`` - Physical backups of the whole instance
  (:mod:`rdsbackup.engines.postgres.physical`);
* GNU ``tar`` and ``pg_controldata`` - Snapshot backups of a local instance: the data
  directory copied between ``pg_backup_start`` and ``pg_backup_stop``, with its WAL
  (:mod:`rdsbackup.engines.postgres.snapshot`);
* ``pg_verifybackup`` (with ``pg_waldump``) - checks a restored Physical or Snapshot set;
* ``pg_dump`` and ``pg_dumpall --globals-only`` - Logical backups;
* ``pg_restore`` and ``psql`` - Logical restores
  (:mod:`rdsbackup.engines.postgres.logical`).

Passwords reach the tools in a 0600 password file (``PGPASSFILE``), never on a command
line nor in their environment. Database names reach them as ``PGDATABASE`` or a quoted
``dbname='...'`` connection string.

Databases: ``probe`` lists the user databases the way RDS does, that is every
connectable non-template database except ``postgres``. A Logical instance backup
still dumps ``postgres`` too (so nothing stored there is lost), and a restore loads
it into the target's existing ``postgres`` database.

Not supported: incremental backups (PostgreSQL 15 base backups have no incremental
form), Physical or Snapshot backups of single databases, and Physical or Snapshot
backups of instances with user tablespaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from rdsbackup.engines.base import (
    BackupKind,
    BackupMethod,
    BackupPlan,
    BackupResult,
    BackupStrategy,
    DatabaseInfo,
    Engine,
    EngineError,
    ObjectSink,
    ObjectSource,
    ProgressCallback,
    ServerAccess,
    ServerInfo,
    StoredSet,
    UnsupportedPlan,
)
from rdsbackup.engines.families import POSTGRES
from rdsbackup.engines.logs import LogEngine, LogFile, LogStreamer, RecoveryTarget
from rdsbackup.engines.postgres import wal
from rdsbackup.engines.postgres.common import Connection, rows, scalar, server_version, session
from rdsbackup.engines.postgres.logical import (
    DUMPABLE,
    expected_dump_bytes,
    logical_backup,
    logical_restore,
    user_databases,
)
from rdsbackup.engines.postgres.physical import base_backup, restore_base
from rdsbackup.engines.postgres.restore_point import Fingerprinting
from rdsbackup.engines.postgres.snapshot import check_snapshot, snapshot_backup
from rdsbackup.engines.postgres.snapshot import expected_bytes as snapshot_bytes
from rdsbackup.manifest import Manifest

_DATABASES = """
SELECT datname, pg_encoding_to_char(encoding), datcollate FROM pg_database
WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres' ORDER BY datname
"""
_ALL_SIZE = "SELECT coalesce(sum(pg_database_size(oid)), 0)::bigint FROM pg_database"
_PHYSICAL_SIZE = (
    "SELECT (SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint"
    " + pg_size_bytes(current_setting('wal_segment_size'))"
)
_READ_ONLY = "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'"
_USER_TABLESPACES = (
    "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
)
_UNSUPPORTED_STRATEGY = (
    "PostgreSQL Physical and Snapshot backups cover the whole instance; "
    "use BackupMethod=Logical with BackupStrategy=db"
)
_NO_INCREMENTAL = (
    "PostgreSQL 15 base backups have no incremental form (pg_basebackup --incremental"
    " needs PostgreSQL 17); take a FullBackup"
)
_WHOLE_INSTANCE = (BackupMethod.PHYSICAL, BackupMethod.SNAPSHOT)


class PostgresEngine(Engine, LogEngine):
    """PostgreSQL through pg_basebackup (Physical), tar between pg_backup_start and
    pg_backup_stop (Snapshot) and pg_dump/pg_dumpall (Logical); restores through tar
    extraction + pg_verifybackup, and psql + pg_restore.

    Physical and Snapshot sets are consistent at ``stop_lsn`` (positions: start_lsn,
    stop_lsn, timeline; ``consistent_time`` is taken when pg_basebackup has finished,
    or pg_backup_stop has returned, so it is at or just after that point). Logical
    sets take one pg_dump snapshot per database: each database is consistent in
    itself, somewhere between ``start_lsn`` and ``stop_lsn``, and ``consistent_time``
    is when the first dump was started.

    ``restore_jobs`` is ``pg_restore --jobs``; ``spool_dir`` is where a logical restore
    keeps the one dump it is loading (default: the system temporary folder).
    """

    family = POSTGRES.name

    def __init__(self, *, restore_jobs: int = 2, spool_dir: Path | None = None) -> None:
        self.restore_jobs = restore_jobs
        self.spool_dir = spool_dir

    def probe(self, access: ServerAccess) -> ServerInfo:
        with session(access) as conn:
            databases = tuple(
                DatabaseInfo(name, charset, collation)
                for name, charset, collation in rows(conn, _DATABASES)
            )
            return ServerInfo(
                version=server_version(conn),
                databases=databases,
                data_bytes=int(scalar(conn, _ALL_SIZE)),
                read_only=bool(scalar(conn, _READ_ONLY)),
            )

    def check_plan(self, plan: BackupPlan, access: ServerAccess) -> None:
        _check_static(plan)
        with session(access) as conn:
            if plan.method in _WHOLE_INSTANCE:
                _check_tablespaces(conn)
            if plan.method == BackupMethod.SNAPSHOT:
                check_snapshot(conn, access)
            elif plan.strategy == BackupStrategy.DB:
                _check_databases(conn, plan.databases)

    def expected_bytes(self, access: ServerAccess, plan: BackupPlan) -> int:
        with session(access) as conn:
            if plan.method == BackupMethod.PHYSICAL:
                return int(scalar(conn, _PHYSICAL_SIZE))
            if plan.method == BackupMethod.SNAPSHOT:
                return snapshot_bytes(conn, access)
            databases = _logical_databases(conn, plan)
        return expected_dump_bytes(access, databases)

    def backup(
        self,
        access: ServerAccess,
        plan: BackupPlan,
        sink: ObjectSink,
        on_phase: ProgressCallback,
    ) -> BackupResult:
        on_phase("Preparing")
        self.check_plan(plan, access)
        if plan.method == BackupMethod.PHYSICAL:
            return _physical(access, sink, on_phase, plan.fingerprint)
        if plan.method == BackupMethod.SNAPSHOT:
            with session(access) as conn:
                return snapshot_backup(
                    conn,
                    access,
                    sink,
                    on_phase,
                    reflink=plan.reflink,
                    fingerprint=plan.fingerprint,
                )
        with session(access) as conn:
            databases = _logical_databases(conn, plan)
        on_phase("Uploading")
        return logical_backup(access, databases, plan.parallel, sink, fingerprint=plan.fingerprint)

    def restore_physical(
        self, manifest: Manifest, source: ObjectSource, data_dir: Path, chain: list[StoredSet]
    ) -> None:
        if chain:
            raise EngineError(
                "PostgreSQL physical sets are always full: there is no incremental chain"
            )
        if manifest.method not in _WHOLE_INSTANCE:
            raise EngineError(f"not a physical or snapshot set: method {manifest.method}")
        restore_base(source, data_dir)

    def restore_logical(
        self,
        manifest: Manifest,
        source: ObjectSource,
        target: ServerAccess,
        databases: tuple[str, ...] = (),
    ) -> None:
        if manifest.method != BackupMethod.LOGICAL:
            raise EngineError(f"not a logical set: method {manifest.method}")
        logical_restore(
            manifest, source, target, databases, jobs=self.restore_jobs, spool_dir=self.spool_dir
        )

    # -- log backups (engines/postgres/wal.py) ------------------------------------------

    def check_log_source(self, access: ServerAccess) -> None:
        wal.check_log_source(access)

    def log_streamer(
        self, access: ServerAccess, spool: Path, resume_after: LogFile | None
    ) -> LogStreamer:
        return wal.WalStreamer(access, spool)

    def release_log_source(self, access: ServerAccess, spool: Path) -> None:
        wal.drop_slot(access, spool)

    def base_log(self, position: Mapping[str, str]) -> tuple[int, str] | None:
        return wal.base_log(position)

    def switch_log(self, access: ServerAccess) -> None:
        wal.switch_log(access)

    def prepare_recovery(self, data_dir: Path, target: RecoveryTarget) -> None:
        wal.prepare_recovery(data_dir, target)

    def finish_recovery(self, access: ServerAccess, target: RecoveryTarget) -> None:
        wal.finish_recovery(access, target)


def _check_static(plan: BackupPlan) -> None:
    if plan.kind == BackupKind.INCREMENTAL:
        raise UnsupportedPlan("kind", _NO_INCREMENTAL)
    if plan.method in _WHOLE_INSTANCE and plan.strategy == BackupStrategy.DB:
        raise UnsupportedPlan("strategy", _UNSUPPORTED_STRATEGY)
    if plan.strategy == BackupStrategy.DB and not plan.databases:
        raise UnsupportedPlan("strategy", "BackupStrategy=db needs at least one database")


def _check_tablespaces(conn: Connection) -> None:
    names = [r[0] for r in rows(conn, _USER_TABLESPACES)]
    if names:
        raise UnsupportedPlan(
            "method",
            "Physical and Snapshot backups of instances with user tablespaces are not"
            " supported "
            f"({', '.join(names)}); use BackupMethod=Logical",
        )


def _check_databases(conn: Connection, databases: tuple[str, ...]) -> None:
    dumpable = {r[0] for r in rows(conn, DUMPABLE)}
    missing = [db for db in databases if db not in dumpable]
    if missing:
        raise UnsupportedPlan("strategy", f"no such database: {', '.join(missing)}")


def _logical_databases(conn: Connection, plan: BackupPlan) -> list[str]:
    """The databases a logical plan dumps: the named ones, or all including ``postgres``."""
    if plan.strategy == BackupStrategy.DB:
        return list(plan.databases)
    return [r[0] for r in rows(conn, DUMPABLE + " ORDER BY datname")]


def _physical(
    access: ServerAccess, sink: ObjectSink, on_phase: ProgressCallback, fingerprint: bool
) -> BackupResult:
    """``fingerprint``: the set's WAL goes on to a restore point whose tables are
    fingerprinted (:class:`~rdsbackup.engines.postgres.restore_point.Fingerprinting`)."""
    with session(access) as conn:
        version = server_version(conn)
        databases = user_databases(conn)
    on_phase("Uploading")
    with ExitStack() as stack:
        marks = None
        if fingerprint:
            marks = Fingerprinting(stack.enter_context(session(access)), access, stack)
        done = base_backup(access, sink, marks.base_backup_members if marks else None)
        result = BackupResult(
            engine_version=version,
            databases=databases,
            tool_versions=done.tool_versions,
            consistent_position=done.position,
            consistent_time=done.finished_at,
        )
        return marks.apply(result) if marks else result
