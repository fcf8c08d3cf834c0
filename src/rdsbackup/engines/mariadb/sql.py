"""SQL sessions with a MariaDB server (PyMySQL): probing, status counters, and the
``BACKUP STAGE`` lock session the Snapshot and Logical methods hold while they fix
their consistent point."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from datetime import UTC, datetime
from typing import Any

import pymysql

from rdsbackup.engines.base import EngineError, ServerAccess, ServerUnavailable

SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "mysql", "sys")
VIRTUAL_SCHEMAS = ("information_schema", "performance_schema")
CONNECT_TIMEOUT = 5
LOCK_WAIT_TIMEOUT = 60
"""Seconds a ``BACKUP STAGE`` statement may wait for a conflicting lock (a running
commit, a DDL statement, another backup) before the backup fails."""
_LOST = (2006, 2013)
"""MySQL server has gone away / Lost connection to server during query."""


def connect(access: ServerAccess, *, read_timeout: int = 300) -> Any:
    """A PyMySQL connection; ServerUnavailable with the driver's message on failure."""
    try:
        return pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=read_timeout,
            charset="utf8mb4",
            autocommit=True,
            # TLS on loopback buys nothing, and PyMySQL builds a new SSLContext (loading
            # the system CA store, ~50 ms of CPU) for every TLS-preferred connection.
            ssl_disabled=is_loopback(access.host),
        )
    except pymysql.err.MySQLError as e:
        raise ServerUnavailable(f"{access.host}:{access.port}: {driver_message(e)}") from e


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def table_fingerprint(cur: Any, database: str, table: str) -> list[object]:
    """``[rows, CHECKSUM TABLE ... EXTENDED]``. Inside a transaction both read its
    snapshot (InnoDB consistent reads), so a fingerprint taken in a dump's snapshot
    describes exactly what the dump holds."""
    ident = f"{quote_name(database)}.{quote_name(table)}"
    cur.execute(f"SELECT COUNT(*) FROM {ident}")
    count = int(cur.fetchone()[0])
    cur.execute(f"CHECKSUM TABLE {ident} EXTENDED")
    return [count, str(cur.fetchone()[1])]


class SnapshotSession:
    """A session holding a consistent snapshot, opened while ``BACKUP STAGE
    BLOCK_COMMIT`` is held (by the dump's lock session, or by mariadb-backup) so that
    it sees what the backup holds; it fingerprints the tables once they are written."""

    def __init__(self, access: ServerAccess) -> None:
        self.where = f"{access.host}:{access.port}"
        self.conn = connect(access, read_timeout=24 * 3600)
        self.opened = False

    def open(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        self.opened = True

    def binlog_position(self) -> dict[str, str]:
        """binlog_file/binlog_pos the open snapshot is consistent with (empty without a
        binary log)."""
        with self.conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            found = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        name, pos = found.get("binlog_snapshot_file", ""), found.get("binlog_snapshot_position", "")
        return {"binlog_file": name, "binlog_pos": pos} if name else {}

    def base_tables(self, databases: tuple[str, ...] | None) -> list[tuple[str, str]]:
        """``BASE TABLE``s of ``databases`` (None: every user database)."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_type = 'BASE TABLE'"
            )
            rows = [(str(d), str(t)) for d, t in cur.fetchall()]
        if databases is None:
            return [r for r in rows if r[0] not in SYSTEM_SCHEMAS]
        return [r for r in rows if r[0] in databases]

    def fingerprints(self, tables: list[tuple[str, str]]) -> dict[str, list[object]]:
        try:
            with self.conn.cursor() as cur:
                return {f"{db}.{t}": table_fingerprint(cur, db, t) for db, t in sorted(tables)}
        except pymysql.err.MySQLError as e:
            raise EngineError(f"{self.where}: fingerprinting failed: {driver_message(e)}") from e

    def close(self) -> None:
        with contextlib.suppress(pymysql.err.MySQLError):
            self.conn.close()

    def __enter__(self) -> SnapshotSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def driver_message(e: BaseException) -> str:
    if len(e.args) >= 2 and isinstance(e.args[1], str):
        return e.args[1]
    return str(e) or type(e).__name__


def query(access: ServerAccess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(access)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    except pymysql.err.MySQLError as e:
        raise ServerUnavailable(f"{access.host}:{access.port}: {driver_message(e)}") from e
    finally:
        conn.close()


def global_status(access: ServerAccess, *names: str) -> dict[str, int]:
    """Numeric ``SHOW GLOBAL STATUS`` values (absent ones are left out)."""
    rows = query(
        access,
        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
        " WHERE VARIABLE_NAME IN %s",
        (tuple(n.upper() for n in names),),
    )
    return {str(k).lower(): int(v) for k, v in rows if str(v).lstrip("-").isdigit()}


class StageLock:
    """One session taking ``BACKUP STAGE`` locks. ``block_commit`` runs START, FLUSH,
    BLOCK_DDL (those ``block_ddl`` has not run) and BLOCK_COMMIT: from then on no
    transaction commits, no DDL runs and no non-transactional table is written, until
    ``end`` (or the session closes, which the server treats as END). Unlike FLUSH TABLES
    WITH READ LOCK, no stage waits for running statements, only for running commits and
    DDL."""

    def __init__(self, access: ServerAccess) -> None:
        self.where = f"{access.host}:{access.port}"
        self.conn = connect(access)
        self._ddl_at = self._commit_at = 0.0
        self.blocked_at: datetime | None = None
        self.commit_seconds = self.ddl_seconds = 0.0
        self.run(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        except pymysql.err.MySQLError as e:
            message = f"{self.where}: {sql.split(' ')[0]} ... failed: {driver_message(e)}"
            if e.args and e.args[0] in _LOST:
                raise ServerUnavailable(message) from e
            raise EngineError(message) from e

    def block_ddl(self) -> None:
        """START, FLUSH and BLOCK_DDL: from now on no DDL runs and no non-transactional
        table is written; InnoDB commits go on."""
        self.run("BACKUP STAGE START")
        self._ddl_at = time.monotonic()
        self.run("BACKUP STAGE FLUSH")
        self.run("BACKUP STAGE BLOCK_DDL")

    def block_commit(self) -> None:
        if not self._ddl_at:
            self.block_ddl()
        self.run("BACKUP STAGE BLOCK_COMMIT")
        self._commit_at = time.monotonic()
        self.blocked_at = datetime.now(UTC)

    def position(self) -> dict[str, str]:
        """binlog_file/binlog_pos/gtid; exact while commits are blocked."""
        found: dict[str, str] = {}
        status = self.run("SHOW MASTER STATUS")
        if status:
            found.update(binlog_file=str(status[0][0]), binlog_pos=str(status[0][1]))
        (gtid,) = self.run("SELECT @@gtid_binlog_pos")[0]
        if gtid:
            found["gtid"] = str(gtid)
        return found

    def status(self, name: str) -> int:
        rows = self.run(f"SHOW GLOBAL STATUS LIKE '{name}'")
        return int(rows[0][1]) if rows else 0

    def end(self) -> None:
        self.run("BACKUP STAGE END")
        now = time.monotonic()
        if self._commit_at:
            self.commit_seconds = now - self._commit_at
        if self._ddl_at:
            self.ddl_seconds = now - self._ddl_at

    def close(self) -> None:
        with contextlib.suppress(pymysql.err.MySQLError):
            self.conn.close()  # a lost session: the server has released what it held

    def __enter__(self) -> StageLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
