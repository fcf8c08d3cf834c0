"""The MariaDB engine (also MySQL servers, where the tools support them).

Methods, kinds and strategies (``BackupPlan``):

* Physical, full, instance: ``mariadb-backup --backup --stream=xbstream``;
* Physical, incremental: the same with ``--incremental-lsn`` = the parent's ``to_lsn``;
* Physical, per database: ``mariadb-backup --databases`` (a partial copy: see
  :mod:`rdsbackup.engines.mariadb.physical` for what a restored one holds);
  all restored with ``mbstream`` and ``mariadb-backup --prepare`` (incrementals applied
  in order with ``--incremental-dir``);
* Snapshot: the data directory at one instant inside a ``BACKUP STAGE BLOCK_COMMIT``
  window, as a tar stream, recovered by the server at its first start
  (:mod:`rdsbackup.engines.mariadb.snapshot`);
* Logical, instance or per database: parallel ``mariadb-dump --single-transaction``
  workers whose snapshots all open while commits are blocked, loaded back with one
  ``mariadb`` client per object (:mod:`rdsbackup.engines.mariadb.parallel`).

Physical and Snapshot read the data directory, so the server must be on this machine.
The server is probed with PyMySQL.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pymysql

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
    StoredSet,
    UnsupportedPlan,
)
from rdsbackup.engines.families import MARIADB
from rdsbackup.engines.logs import LogEngine, LogFile, LogStreamer, RecoveryTarget
from rdsbackup.engines.mariadb import binlog as mariadb_binlog
from rdsbackup.engines.mariadb import logical as mariadb_logical
from rdsbackup.engines.mariadb import parallel as mariadb_parallel
from rdsbackup.engines.mariadb import physical as mariadb_physical
from rdsbackup.engines.mariadb import snapshot as mariadb_snapshot
from rdsbackup.engines.mariadb.sql import (
    SYSTEM_SCHEMAS,
    VIRTUAL_SCHEMAS,
    connect,
    driver_message,
    global_status,
    query,
)
from rdsbackup.manifest import Manifest

__all__ = [
    "SYSTEM_SCHEMAS",
    "MariaDBEngine",
    "ServerFacts",
    "connect",
    "data_dir_bytes",
    "server_facts",
]

_BINLOG_FILE = re.compile(r".+\.\d{6}$")
"""Binary and relay log file names (``binlog.000002``): mariadb-backup does not copy them."""
_NOT_COPIED = ("ib_logfile", "ibtmp", "ib_buffer_pool")
_INNODB_FILE = re.compile(r"(.+\.ibd|ibdata\d+|undo\d+)$")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+$")
"""Database names mariadb-backup --databases can take as they are (their directory has
the same name, and no space or dot splits them)."""


@dataclass(frozen=True)
class ServerFacts:
    info: ServerInfo
    log_bin: bool
    mariadb: bool
    """False for a MySQL server."""


class MariaDBEngine(Engine, LogEngine):
    """MariaDB and MySQL: drives ``mariadb-backup`` and ``mbstream`` (Physical), its own
    tar stream under ``BACKUP STAGE`` (Snapshot), ``mariadb-dump`` and ``mariadb``
    (Logical)."""

    family = MARIADB.name

    def probe(self, access: ServerAccess) -> ServerInfo:
        return server_facts(access).info

    def check_plan(self, plan: BackupPlan, access: ServerAccess) -> None:
        if plan.method == BackupMethod.SNAPSHOT:
            _check_snapshot(plan, access)
        elif plan.method == BackupMethod.PHYSICAL:
            _check_physical(plan, access)
        elif plan.kind == BackupKind.INCREMENTAL:
            raise UnsupportedPlan("kind", "Logical backups are always full; use Physical")
        if plan.strategy == BackupStrategy.DB:
            _check_database_list(plan.databases)

    def expected_bytes(self, access: ServerAccess, plan: BackupPlan) -> int:
        if plan.method == BackupMethod.SNAPSHOT and access.data_dir is not None:
            return mariadb_snapshot.expected_bytes(access.data_dir)
        if plan.method == BackupMethod.PHYSICAL and access.data_dir is not None:
            return _physical_bytes(access, plan, access.data_dir)
        databases = plan.databases if plan.strategy == BackupStrategy.DB else ()
        return mariadb_parallel.expected_bytes(_data_lengths(access, databases))

    def backup(
        self, access: ServerAccess, plan: BackupPlan, sink: ObjectSink, on_phase: ProgressCallback
    ) -> BackupResult:
        on_phase("Preparing")
        self.check_plan(plan, access)
        if plan.strategy == BackupStrategy.DB:
            _check_databases_exist(plan.databases, access)
        facts = server_facts(access)
        if plan.method == BackupMethod.PHYSICAL:
            return _backup_physical(facts, access, plan, sink, on_phase)
        if plan.method == BackupMethod.SNAPSHOT:
            return _backup_snapshot(facts, access, plan, sink, on_phase)
        return _backup_logical(facts, access, plan, sink, on_phase)

    def restore_physical(
        self, manifest: Manifest, source: ObjectSource, data_dir: Path, chain: list[StoredSet]
    ) -> None:
        if manifest.method == BackupMethod.SNAPSHOT:
            if chain:
                raise EngineError("a Snapshot set is restored on its own, not on a chain")
            mariadb_snapshot.restore_snapshot(source, data_dir)
            return
        if manifest.method != BackupMethod.PHYSICAL:
            raise EngineError(f"a {manifest.method} set cannot be restored as a data directory")
        if manifest.kind == BackupKind.INCREMENTAL and not chain:
            raise EngineError("an incremental set is restored with the sets it builds on")
        sets = [(s.manifest, s.source) for s in chain] + [(manifest, source)]
        mariadb_physical.restore_chain(sets, data_dir)

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
        names = {o.name.removesuffix(".zst") for o in manifest.objects}
        if mariadb_logical.DUMP_OBJECT in names:  # a single-stream set
            mariadb_logical.restore_logical(source, target, databases)
        else:
            mariadb_parallel.restore_parallel(sorted(names), source, target, databases)

    # -- log backups (engines/mariadb/binlog.py) ---------------------------------------

    def check_log_source(self, access: ServerAccess) -> None:
        mariadb_binlog.check_log_source(access)

    def log_streamer(
        self, access: ServerAccess, spool: Path, resume_after: LogFile | None
    ) -> LogStreamer:
        return mariadb_binlog.log_streamer(access, spool, resume_after)

    def base_log(self, position: Mapping[str, str]) -> tuple[int, str] | None:
        name = position.get("binlog_file", "")
        return (1, name) if name and position.get("binlog_pos", "").isdigit() else None

    def switch_log(self, access: ServerAccess) -> None:
        mariadb_binlog.switch_log(access)

    def prepare_recovery(self, data_dir: Path, target: RecoveryTarget) -> None:
        return None  # the binlogs are replayed into the running server

    def finish_recovery(self, access: ServerAccess, target: RecoveryTarget) -> None:
        mariadb_binlog.finish_recovery(access, target)


# -- plans -----------------------------------------------------------------------------


def _need_data_dir(access: ServerAccess, method: str) -> None:
    if access.data_dir is None:
        raise UnsupportedPlan(
            "method",
            f"{method} backups need the server's data directory on this machine;"
            " this instance has none configured",
        )


def _check_snapshot(plan: BackupPlan, access: ServerAccess) -> None:
    _need_data_dir(access, "Snapshot")
    if plan.kind == BackupKind.INCREMENTAL:
        raise UnsupportedPlan("kind", "a Snapshot is always a full copy; use Physical")
    if plan.strategy == BackupStrategy.DB:
        raise UnsupportedPlan(
            "strategy", "a Snapshot copies the whole data directory; use Physical or Logical"
        )
    if access.data_dir is not None and not os.access(access.data_dir, os.R_OK | os.X_OK):
        raise UnsupportedPlan(
            "method", f"the service cannot read {access.data_dir}, which a Snapshot copies"
        )


def _check_physical(plan: BackupPlan, access: ServerAccess) -> None:
    _need_data_dir(access, "Physical")
    if plan.strategy == BackupStrategy.DB:
        bad = [d for d in plan.databases if not _PLAIN_NAME.match(d)]
        if bad:
            raise UnsupportedPlan(
                "strategy",
                f"a per-database Physical backup takes plain names only, not {bad[0]!r};"
                " use Logical",
            )
    if plan.kind == BackupKind.INCREMENTAL:
        _check_parent(plan)


def _check_parent(plan: BackupPlan) -> None:
    if plan.strategy == BackupStrategy.DB:
        raise UnsupportedPlan("kind", "incremental backups are of the whole instance only")
    parent = plan.parent
    if parent is None:
        raise UnsupportedPlan("kind", "an incremental backup needs a parent set")
    if (
        parent.engine not in MARIADB.engines
        or parent.method != BackupMethod.PHYSICAL
        or parent.strategy != BackupStrategy.INSTANCE
        or not parent.extra.get("to_lsn", "").isdigit()
    ):
        raise UnsupportedPlan(
            "kind",
            "an incremental backup builds on a Physical instance set of this MariaDB"
            f" server with a to_lsn; the parent is a {parent.engine} {parent.method}"
            f" {parent.strategy} set",
        )


def _check_database_list(databases: tuple[str, ...]) -> None:
    if not databases:
        raise UnsupportedPlan("strategy", "a database-level backup needs the databases to back up")
    odd = [d for d in databases if not d or d.startswith("-") or d in SYSTEM_SCHEMAS]
    if odd:
        raise UnsupportedPlan("strategy", f"cannot back up database {odd[0]!r} on its own")


def _check_databases_exist(databases: tuple[str, ...], access: ServerAccess) -> None:
    rows = query(
        access,
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN %s",
        (databases,),
    )
    missing = sorted(set(databases) - {str(r[0]) for r in rows})
    if missing:
        raise EngineError(f"no such database: {', '.join(missing)}")


# -- backups ---------------------------------------------------------------------------


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
    chosen = list(plan.databases) if plan.strategy == BackupStrategy.DB else []
    return BackupResult(
        engine_version=facts.info.version,
        databases=chosen or [d.name for d in facts.info.databases],
        tool_versions=out.tool_versions,
        consistent_position=out.position,
        consistent_time=out.consistent_time,
        extra={**out.extra, **_write_counters(access)},
        fingerprints=out.fingerprints,
    )


def _backup_snapshot(
    facts: ServerFacts,
    access: ServerAccess,
    plan: BackupPlan,
    sink: ObjectSink,
    on_phase: ProgressCallback,
) -> BackupResult:
    on_phase("Uploading")
    out = mariadb_snapshot.backup_snapshot(
        access, sink, fingerprint=plan.fingerprint, reflink=plan.reflink
    )
    on_phase("Checking")
    return BackupResult(
        engine_version=facts.info.version,
        databases=[d.name for d in facts.info.databases],
        tool_versions={"mariadb": facts.info.version},
        consistent_position=out.position,
        consistent_time=out.consistent_time,
        extra=out.extra,
        fingerprints=out.fingerprints,
    )


def _backup_logical(
    facts: ServerFacts,
    access: ServerAccess,
    plan: BackupPlan,
    sink: ObjectSink,
    on_phase: ProgressCallback,
) -> BackupResult:
    chosen = plan.databases if plan.strategy == BackupStrategy.DB else None
    on_phase("Uploading")
    out = mariadb_parallel.backup_parallel(
        access, chosen, max(1, plan.parallel), sink, fingerprint=plan.fingerprint
    )
    on_phase("Checking")
    return BackupResult(
        engine_version=facts.info.version,
        databases=out.databases,
        tool_versions=out.tool_versions,
        consistent_position=out.position,
        consistent_time=out.consistent_time,
        extra=out.extra,
        fingerprints=out.fingerprints,
    )


# -- the server ------------------------------------------------------------------------


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
        raise ServerUnavailable(f"{access.host}:{access.port}: {driver_message(e)}") from e
    finally:
        conn.close()
    info = ServerInfo(_short_version(str(version)), databases, int(data_bytes), bool(read_only))
    return ServerFacts(info, bool(log_bin), "mariadb" in str(version).lower())


def _short_version(version: str) -> str:
    m = re.match(r"\d+\.\d+\.\d+", version)
    return m.group(0) if m else version


def _data_lengths(access: ServerAccess, databases: tuple[str, ...]) -> list[int]:
    """``data_length`` of every table of ``databases`` (all user databases when empty)."""
    if databases:
        where, params = "table_schema IN %s", (databases,)
    else:
        where, params = "table_schema NOT IN %s", (SYSTEM_SCHEMAS,)
    rows = query(
        access,
        "SELECT COALESCE(data_length, 0) FROM information_schema.tables"
        f" WHERE table_type <> 'VIEW' AND {where}",
        params,
    )
    return [int(r[0]) for r in rows]


def _write_counters(access: ServerAccess) -> dict[str, str]:
    """InnoDB's page-write count and the server's start, for estimating an incremental."""
    status = global_status(access, "Innodb_pages_written", "Uptime")
    return {
        "innodb_pages_written": str(status.get("innodb_pages_written", 0)),
        "server_started": str(int(time.time()) - status.get("uptime", 0)),
    }


def _physical_bytes(access: ServerAccess, plan: BackupPlan, data_dir: Path) -> int:
    """Bytes mariadb-backup will stream: every file it copies; for an incremental, the
    non-InnoDB files plus the InnoDB pages written since the parent (as InnoDB counts
    page writes; when the server restarted since, all of them)."""
    if plan.strategy == BackupStrategy.DB:
        wanted = {*plan.databases, *mariadb_physical.PARTIAL_SYSTEM_SCHEMAS}
        return sum(s for n, s in _walk(data_dir) if n.split("/")[0] in wanted or "/" not in n)
    if plan.kind != BackupKind.INCREMENTAL or plan.parent is None:
        return data_dir_bytes(data_dir)
    innodb = other = 0
    for name, size in _walk(data_dir):
        if _INNODB_FILE.match(name.rsplit("/", 1)[-1]):
            innodb += size
        else:
            other += size
    return other + min(innodb, _changed_pages_bytes(access, plan.parent, innodb))


def _changed_pages_bytes(access: ServerAccess, parent: Manifest, innodb: int) -> int:
    now = global_status(
        access,
        "Innodb_pages_written",
        "Innodb_buffer_pool_pages_dirty",
        "Innodb_page_size",
        "Uptime",
    )
    page = now.get("innodb_page_size", 16384)
    started = int(time.time()) - now.get("uptime", 0)
    before = int(parent.extra.get("innodb_pages_written", "-1") or -1)
    same_run = abs(started - int(parent.extra.get("server_started", "0") or 0)) <= 2
    written = now.get("innodb_pages_written", 0) - before
    if not same_run or before < 0 or written < 0:
        return innodb
    return (written + now.get("innodb_buffer_pool_pages_dirty", 0)) * page


def data_dir_bytes(path: Path) -> int:
    """Bytes of the files mariadb-backup will copy (redo, temporary and log files left out)."""
    return sum(size for _, size in _walk(path))


def _walk(path: Path, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(relative name, size) of the files mariadb-backup copies."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.is_file(follow_symlinks=False) and not _skipped(entry.name):
                yield prefix + entry.name, entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue


def _skipped(name: str) -> bool:
    return name.startswith(_NOT_COPIED) or bool(_BINLOG_FILE.match(name))
