"""The PostgreSQL engine.

Tools driven (found through ``pg_config --bindir`` or ``/usr/lib/postgresql/*/bin``):

* ``pg_basebackup`` - physical backups of the whole instance
  (:mod:`rdsbackup.engines.postgres_physical`);
* ``pg_verifybackup`` (with ``pg_waldump``) - checks a restored physical set;
* ``pg_dump`` and ``pg_dumpall --globals-only`` - logical backups;
* ``pg_restore`` and ``psql`` - logical restores
  (:mod:`rdsbackup.engines.postgres_logical`).

Passwords reach the tools as ``PGPASSWORD`` only, never on a command line. Database
names reach them as ``PGDATABASE`` or a quoted ``dbname='...'`` connection string.

Databases: ``probe`` lists the user databases the way RDS does, that is every
connectable non-template database except ``postgres``. A Logical instance backup
still dumps ``postgres`` too (so nothing stored there is lost), and a restore loads
it into the target's existing ``postgres`` database.
"""

from __future__ import annotations

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
    UnsupportedPlan,
)
from rdsbackup.engines.postgres_common import Connection, rows, scalar, server_version, session
from rdsbackup.engines.postgres_logical import (
    DUMPABLE,
    logical_backup,
    logical_restore,
    user_databases,
)
from rdsbackup.engines.postgres_physical import base_backup, restore_base
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
_SIZE_OF = (
    "SELECT coalesce(sum(pg_database_size(oid)), 0)::bigint FROM pg_database"
    " WHERE datname = ANY(%s)"
)
_READ_ONLY = "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'"
_USER_TABLESPACES = (
    "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
)
_UNSUPPORTED_STRATEGY = (
    "PostgreSQL physical backups cover the whole instance; "
    "use BackupMethod=Logical with BackupStrategy=db"
)


class PostgresEngine(Engine):
    """PostgreSQL through pg_basebackup (Physical) and pg_dump/pg_dumpall (Logical);
    restores through tar extraction + pg_verifybackup, and psql + pg_restore.

    Physical sets are consistent at ``stop_lsn`` (positions: start_lsn, stop_lsn,
    timeline; ``consistent_time`` is taken when pg_basebackup has finished, so it is
    at or just after that point). Logical sets take one pg_dump snapshot per database:
    each database is consistent in itself, somewhere between ``start_lsn`` and
    ``stop_lsn``, and ``consistent_time`` is when the first dump was started.

    ``restore_jobs`` is ``pg_restore --jobs``; ``spool_dir`` is where a logical restore
    keeps the one dump it is loading (default: the system temporary folder).
    """

    family = "PostgreSQL"

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
            if plan.method == BackupMethod.PHYSICAL:
                _check_tablespaces(conn)
            elif plan.strategy == BackupStrategy.DB:
                _check_databases(conn, plan.databases)

    def expected_bytes(self, access: ServerAccess, plan: BackupPlan) -> int:
        with session(access) as conn:
            if plan.method == BackupMethod.PHYSICAL:
                return int(scalar(conn, _PHYSICAL_SIZE))
            return int(scalar(conn, _SIZE_OF, (list(_logical_databases(conn, plan)),)))

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
            return _physical(access, sink, on_phase)
        with session(access) as conn:
            databases = _logical_databases(conn, plan)
        on_phase("Uploading")
        return logical_backup(access, databases, plan.parallel, sink)

    def restore_physical(
        self, manifest: Manifest, source: ObjectSource, data_dir: Path, chain: list[Manifest]
    ) -> None:
        if chain:
            raise EngineError(
                "PostgreSQL physical sets are always full: there is no incremental chain"
            )
        if manifest.method != BackupMethod.PHYSICAL:
            raise EngineError(f"not a physical set: method {manifest.method}")
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


def _check_static(plan: BackupPlan) -> None:
    if plan.method == BackupMethod.SNAPSHOT:
        raise UnsupportedPlan("method", "Snapshot backups of PostgreSQL are not supported")
    if plan.kind == BackupKind.INCREMENTAL:
        raise UnsupportedPlan(
            "kind", "PostgreSQL 15 base backups have no incremental form; take a FullBackup"
        )
    if plan.method == BackupMethod.PHYSICAL and plan.strategy == BackupStrategy.DB:
        raise UnsupportedPlan("strategy", _UNSUPPORTED_STRATEGY)
    if plan.strategy == BackupStrategy.DB and not plan.databases:
        raise UnsupportedPlan("strategy", "BackupStrategy=db needs at least one database")


def _check_tablespaces(conn: Connection) -> None:
    names = [r[0] for r in rows(conn, _USER_TABLESPACES)]
    if names:
        raise UnsupportedPlan(
            "method",
            "physical backups of instances with user tablespaces are not supported "
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


def _physical(access: ServerAccess, sink: ObjectSink, on_phase: ProgressCallback) -> BackupResult:
    with session(access) as conn:
        version = server_version(conn)
        databases = user_databases(conn)
    on_phase("Uploading")
    done = base_backup(access, sink)
    return BackupResult(
        engine_version=version,
        databases=databases,
        tool_versions=done.tool_versions,
        consistent_position=done.position,
        consistent_time=done.finished_at,
    )
