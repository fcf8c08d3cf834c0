"""The MariaDB engine (also MySQL servers, where the tools support them).

Physical sets are taken with ``mariadb-backup --backup --stream=xbstream`` (it reads the
data directory, so the server must be on this machine) and restored with ``mbstream``
and ``mariadb-backup --prepare``; see :mod:`rdsbackup.engines.mariadb_physical`.
Logical sets are taken with ``mariadb-dump --single-transaction`` and restored with the
``mariadb`` client; see :mod:`rdsbackup.engines.mariadb_logical`. The server is probed
with PyMySQL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from rdsbackup.engines import mariadb_logical, mariadb_physical
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
    ServerUnavailable,
    UnsupportedPlan,
)
from rdsbackup.manifest import Manifest

SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "mysql", "sys")
VIRTUAL_SCHEMAS = ("information_schema", "performance_schema")
CONNECT_TIMEOUT = 5
_BINLOG_FILE = re.compile(r".+\.\d{6}$")
"""Binary and relay log file names (``binlog.000002``): mariadb-backup does not copy them."""
_NOT_COPIED = ("ib_logfile", "ibtmp", "ib_buffer_pool")


@dataclass(frozen=True)
class ServerFacts:
    info: ServerInfo
    log_bin: bool
    mariadb: bool
    """False for a MySQL server."""


class MariaDBEngine(Engine):
    """MariaDB and MySQL: drives ``mariadb-backup`` and ``mbstream`` (Physical),
    ``mariadb-dump`` and ``mariadb`` (Logical)."""

    family = "MariaDB"

    def probe(self, access: ServerAccess) -> ServerInfo:
        return server_facts(access).info

    def check_plan(self, plan: BackupPlan, access: ServerAccess) -> None:
        if plan.method == BackupMethod.SNAPSHOT:
            raise UnsupportedPlan("method", "Snapshot backups of MariaDB are not supported yet")
        if plan.kind == BackupKind.INCREMENTAL:
            raise UnsupportedPlan("kind", "incremental MariaDB backups are not supported yet")
        if plan.method == BackupMethod.PHYSICAL:
            _check_physical(plan, access)
        elif plan.strategy == BackupStrategy.DB:
            _check_database_list(plan.databases)

    def expected_bytes(self, access: ServerAccess, plan: BackupPlan) -> int:
        if plan.method == BackupMethod.PHYSICAL and access.data_dir is not None:
            return data_dir_bytes(access.data_dir)
        databases = plan.databases if plan.strategy == BackupStrategy.DB else ()
        column = (
            "data_length" if plan.method == BackupMethod.LOGICAL else "data_length + index_length"
        )
        return _table_bytes(access, column, databases)

    def backup(
        self, access: ServerAccess, plan: BackupPlan, sink: ObjectSink, on_phase: ProgressCallback
    ) -> BackupResult:
        on_phase("Preparing")
        self.check_plan(plan, access)
        facts = server_facts(access)
        if plan.method == BackupMethod.PHYSICAL:
            return _backup_physical(facts, access, plan, sink, on_phase)
        return _backup_logical(facts, access, plan, sink, on_phase)

    def restore_physical(
        self, manifest: Manifest, source: ObjectSource, data_dir: Path, chain: list[Manifest]
    ) -> None:
        if chain:
            raise EngineError("restoring incremental MariaDB sets is not supported yet")
        if manifest.method != BackupMethod.PHYSICAL:
            raise EngineError(f"a {manifest.method} set cannot be restored as a data directory")
        mariadb_physical.restore_physical(source, data_dir)

    def restore_logical(
        self,
        manifest: Manifest,
        source: ObjectSource,
        target: ServerAccess,
        databases: tuple[str, ...] = (),
    ) -> None:
        if manifest.method != BackupMethod.LOGICAL:
            raise EngineError(f"a {manifest.method} set cannot be loaded into a running server")
        absent = sorted(set(databases) - set(manifest.databases))
        if absent:
            raise EngineError(f"the backup set has no database {', '.join(absent)}")
        mariadb_logical.restore_logical(source, target, databases)


def _check_physical(plan: BackupPlan, access: ServerAccess) -> None:
    if access.data_dir is None:
        raise UnsupportedPlan(
            "method",
            "Physical backups need the server's data directory on this machine "
            "(mariadb-backup reads it); this instance has none configured",
        )
    if plan.strategy == BackupStrategy.DB:
        raise UnsupportedPlan(
            "strategy", "Physical backups copy the whole instance; use Logical for single databases"
        )


def _check_database_list(databases: tuple[str, ...]) -> None:
    if not databases:
        raise UnsupportedPlan("strategy", "a database-level backup needs the databases to back up")
    odd = [d for d in databases if not d or d.startswith("-") or d in SYSTEM_SCHEMAS]
    if odd:
        raise UnsupportedPlan("strategy", f"cannot back up database {odd[0]!r} on its own")


def _backup_physical(
    facts: ServerFacts,
    access: ServerAccess,
    plan: BackupPlan,
    sink: ObjectSink,
    on_phase: ProgressCallback,
) -> BackupResult:
    if not facts.mariadb and int(facts.info.version.split(".")[0]) >= 8:
        raise UnsupportedPlan(
            "method", f"mariadb-backup cannot copy MySQL {facts.info.version}; use Logical"
        )
    out = mariadb_physical.backup_physical(access, plan, sink, on_phase)
    return BackupResult(
        engine_version=facts.info.version,
        databases=[d.name for d in facts.info.databases],
        tool_versions=out.tool_versions,
        consistent_position=out.position,
        consistent_time=out.consistent_time,
        extra=out.extra,
    )


def _backup_logical(
    facts: ServerFacts,
    access: ServerAccess,
    plan: BackupPlan,
    sink: ObjectSink,
    on_phase: ProgressCallback,
) -> BackupResult:
    chosen = plan.databases if plan.strategy == BackupStrategy.DB else ()
    on_phase("Uploading")
    out = mariadb_logical.backup_logical(
        access, chosen, sink, log_bin=facts.log_bin, gtid=facts.mariadb
    )
    on_phase("Checking")
    return BackupResult(
        engine_version=facts.info.version,
        databases=list(chosen) or [d.name for d in facts.info.databases],
        tool_versions=out.tool_versions,
        consistent_position=out.position,
        consistent_time=out.consistent_time,
    )


def connect(access: ServerAccess) -> Any:
    """A PyMySQL connection; ServerUnavailable with the driver's message on failure."""
    try:
        return pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=300,
            charset="utf8mb4",
            autocommit=True,
        )
    except pymysql.err.MySQLError as e:
        raise ServerUnavailable(f"{access.host}:{access.port}: {_driver_message(e)}") from e


def _driver_message(e: BaseException) -> str:
    if len(e.args) >= 2 and isinstance(e.args[1], str):
        return e.args[1]
    return str(e) or type(e).__name__


def _query(access: ServerAccess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(access)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    except pymysql.err.MySQLError as e:
        raise ServerUnavailable(f"{access.host}:{access.port}: {_driver_message(e)}") from e
    finally:
        conn.close()


def server_facts(access: ServerAccess) -> ServerFacts:
    conn = connect(access)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@read_only, @@log_bin")
            version, read_only, log_bin = cur.fetchone()
            cur.execute(
                "SELECT schema_name, default_character_set_name, default_collation_name"
                " FROM information_schema.schemata WHERE schema_name NOT IN %s"
                " ORDER BY schema_name",
                (SYSTEM_SCHEMAS,),
            )
            databases = tuple(DatabaseInfo(n, c or "", o or "") for n, c, o in cur.fetchall())
            cur.execute(
                "SELECT COALESCE(SUM(data_length + index_length), 0)"
                " FROM information_schema.tables WHERE table_schema NOT IN %s",
                (VIRTUAL_SCHEMAS,),
            )
            (data_bytes,) = cur.fetchone()
    except pymysql.err.MySQLError as e:
        raise ServerUnavailable(f"{access.host}:{access.port}: {_driver_message(e)}") from e
    finally:
        conn.close()
    info = ServerInfo(_short_version(str(version)), databases, int(data_bytes), bool(read_only))
    return ServerFacts(info, bool(log_bin), "mariadb" in str(version).lower())


def _short_version(version: str) -> str:
    m = re.match(r"\d+\.\d+\.\d+", version)
    return m.group(0) if m else version


def _table_bytes(access: ServerAccess, column: str, databases: tuple[str, ...]) -> int:
    if databases:
        where, params = "table_schema IN %s", (databases,)
    else:
        where, params = "table_schema NOT IN %s", (SYSTEM_SCHEMAS,)
    rows = _query(
        access,
        f"SELECT COALESCE(SUM({column}), 0) FROM information_schema.tables WHERE {where}",
        params,
    )
    return int(rows[0][0])


def data_dir_bytes(path: Path) -> int:
    """Bytes of the files mariadb-backup will copy (redo, temporary and log files left out)."""
    return sum(size for name, size in _walk(path) if not _skipped(name))


def _skipped(name: str) -> bool:
    return name.startswith(_NOT_COPIED) or bool(_BINLOG_FILE.match(name))


def _walk(path: Path) -> Iterator[tuple[str, int]]:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield entry.name, entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
