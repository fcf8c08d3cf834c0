"""A WAL restore point that a set of SQL snapshots see exactly, so that Physical and
Snapshot sets can carry fingerprints taken at backup time.

A PostgreSQL Physical or Snapshot set is consistent at the end of the WAL it holds, a
point no SQL snapshot is taken at: a snapshot taken just after the backup stopped sees
whatever committed in between. So the set's WAL is made to end at a point chosen here instead:

1. in every user database a session locks every user table ``IN SHARE MODE`` (writers
   wait; it waits, up to ``LOCK_TIMEOUT``, for transactions that already wrote to one)
   and exports its snapshot; a second session imports that snapshot;
2. ``pg_create_restore_point``: its record follows every commit those snapshots see, and
   no commit that wrote a user table lies between the snapshots and the record (those
   writers wait on the locks). A transaction that wrote a user table takes part in a
   snapshot only once its commit record is in the WAL, and a LOCK waits until it has
   ended, so the snapshots and the WAL up to the record hold the same transactions;
3. the locks are released (writers resume) and the WAL up to the record is flushed.

:func:`segment_member` then ends the set's last WAL segment at the record (zeros after it,
as a segment the server has not written yet), so crash recovery at restore stops there:
the restored tables are the ones the snapshots saw. Unlogged tables are restored empty,
and their fingerprints say so.
"""

from __future__ import annotations

import logging
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from rdsbackup.engines.base import BackupResult, EngineError, ServerAccess
from rdsbackup.engines.postgres.common import (
    Connection,
    database_fingerprint,
    one_line,
    scalar,
    session,
)
from rdsbackup.engines.postgres.datadir import parse_lsn, wal_segments
from rdsbackup.engines.postgres.logical import user_databases
from rdsbackup.engines.tools import CHUNK

log = logging.getLogger(__name__)

SEGMENT_SIZE = "SELECT pg_size_bytes(current_setting('wal_segment_size'))"
LOCK_TIMEOUT = "10s"
FLUSH_LIMIT = 30.0
"""Seconds to wait for the restore point's record to be flushed."""
_TABLES = (
    "SELECT n.nspname, c.relname, c.relpersistence = 'u' FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2"
)


@dataclass
class RestorePoint:
    name: str
    lsn: str = ""
    """The end of the restore point's record: where the set's WAL ends."""
    made_at: datetime | None = None
    lock_seconds: float = 0.0
    """How long writes to user tables waited (from the first LOCK to the last release)."""
    readers: dict[str, Connection] = field(default_factory=dict)
    """Database -> a session in the snapshot the restore point matches."""
    unlogged: set[str] = field(default_factory=set)
    """``db.schema.table`` of the unlogged tables, which a restore leaves empty."""

    def fingerprints(self) -> dict[str, list[object]]:
        found: dict[str, list[object]] = {}
        for database, reader in self.readers.items():
            found.update(database_fingerprint(reader, database))
        for name in self.unlogged:
            found[name] = [0, "0"]
        return found


def create(
    conn: Connection, access: ServerAccess, databases: list[str], stack: ExitStack
) -> RestorePoint:
    """Lock, snapshot, mark and unlock (steps 1-3) over ``conn``; the readers' sessions
    stay open in ``stack``."""
    point = RestorePoint(f"rdsbackup-{secrets.token_hex(6)}")
    with ExitStack() as locks:
        lockers = [locks.enter_context(session(access, db)) for db in databases]
        readers = [stack.enter_context(session(access, db)) for db in databases]
        # listed before the snapshots' transactions: a snapshot is taken at its first query
        tables = [locker.execute(_TABLES).fetchall() for locker in lockers]
        began = time.monotonic()
        sessions = zip(databases, lockers, readers, tables, strict=True)
        for database, locker, reader, found in sessions:
            locker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            locker.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            if found:  # LOCK takes no snapshot: the export below does, with the locks held
                names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t, _ in found)
                locker.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(names))
            point.unlogged |= {f"{database}.{s}.{t}" for s, t, unlogged in found if unlogged}
            exported = str(scalar(locker, "SELECT pg_export_snapshot()"))
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported)))
            point.readers[database] = reader
        point.lsn = str(scalar(conn, "SELECT pg_create_restore_point(%s)::text", (point.name,)))
        point.made_at = datetime.now(UTC)
        for locker in lockers:
            locker.execute("ROLLBACK")  # the locks go
        point.lock_seconds = time.monotonic() - began
    _wait_flushed(conn, point.lsn)
    return point


def _wait_flushed(conn: Connection, lsn: str) -> None:
    deadline = time.monotonic() + FLUSH_LIMIT
    while not scalar(conn, "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (lsn,)):
        if time.monotonic() > deadline:
            raise EngineError(f"the WAL up to the restore point {lsn} was not flushed in time")
        time.sleep(0.005)


def segment_member(
    conn: Connection, segment: str, size: int, lsn: str | None = None
) -> Iterator[bytes]:
    """The tar member of WAL segment ``segment`` read through the server, whole, or (the
    last one :func:`wal_segments` gives up to ``lsn``) up to ``lsn`` and zeros after it."""
    upto = size if lsn is None else (parse_lsn(lsn) - 1) % size + 1  # a boundary: all of it
    info = tarfile.TarInfo(_wal(segment))
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    yield info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    for offset in range(0, upto, CHUNK):
        length = min(CHUNK, upto - offset)
        data = bytes(
            scalar(conn, "SELECT pg_read_binary_file(%s, %s, %s)", (_wal(segment), offset, length))
        )
        if len(data) != length:
            raise EngineError(f"{_wal(segment)} ended before {lsn or 'its end'}")
        yield data
    for offset in range(upto, size, CHUNK):
        yield bytes(min(CHUNK, size - offset))  # a segment is a multiple of 512 bytes


class Fingerprinting:
    """A restore point tried once a backup has stopped, and what the set records of it.
    Without one (locks not granted in time, a role that may not lock or read WAL files)
    the set ends at its stop point, as without fingerprints, and says why."""

    def __init__(self, conn: Connection, access: ServerAccess, readers: ExitStack) -> None:
        self.conn, self.access, self.readers = conn, access, readers
        self.point: RestorePoint | None = None
        self.skipped = ""

    def mark(self, check: Callable[[RestorePoint], None] | None = None) -> RestorePoint | None:
        """The restore point, if it can be made (and passes ``check``)."""
        try:
            point = create(self.conn, self.access, user_databases(self.conn), self.readers)
            if check is not None:
                check(point)
        except (EngineError, psycopg.Error) as e:
            self.skipped = f"not taken: {one_line(str(e))}"
            log.warning("a set without fingerprints: %s", self.skipped)
            return None
        self.point = point
        return point

    def base_backup_members(self, position: dict[str, str]) -> Iterator[bytes]:
        """The tar members to add after pg_basebackup's own (it reported ``position``):
        the WAL segments after its last, up to the restore point's, cut there."""
        size = int(scalar(self.conn, SEGMENT_SIZE))
        timeline, start = int(position["timeline"]), position["start_lsn"]
        included = wal_segments(timeline, start, position["stop_lsn"], size)
        added: list[str] = []

        def readable(point: RestorePoint) -> None:  # a superuser, or pg_read_server_files
            needed = wal_segments(timeline, start, point.lsn, size)
            added.extend([n for n in needed[:-1] if n not in included] + needed[-1:])
            for name in added:
                found = scalar(self.conn, "SELECT (pg_stat_file(%s, true)).size", (_wal(name),))
                if found != size:
                    raise EngineError(f"{_wal(name)} is gone from the server")

        point = self.mark(readable)
        if point is None:
            return
        for name in added[:-1]:
            yield from segment_member(self.conn, name, size)
        yield from segment_member(self.conn, added[-1], size, point.lsn)

    def apply(self, result: BackupResult) -> BackupResult:
        """``result`` ending at the restore point, with its fingerprints; or saying why
        there are none. Call it while the readers are open."""
        point = self.point
        if point is None:
            return replace(result, extra={**result.extra, "fingerprints": self.skipped})
        return replace(
            result,
            consistent_position={
                **result.consistent_position,
                "restore_point": point.name,
                "restore_point_lsn": point.lsn,
            },
            consistent_time=point.made_at or result.consistent_time,
            extra={**result.extra, "write_lock_ms": str(round(point.lock_seconds * 1000))},
            fingerprints=point.fingerprints(),
        )


def _wal(name: str) -> str:
    return f"pg_wal/{name}"
