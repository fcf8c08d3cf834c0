"""Snapshot backups of a local PostgreSQL instance: the data directory copied between
``pg_backup_start`` and ``pg_backup_stop``, with the WAL that makes the copy consistent.

One object, ``base.tar``, laid out like pg_basebackup's: the data directory (see
:mod:`rdsbackup.engines.postgres.datadir` for what is left out), read by GNU ``tar``
running as the data directory's owner, then ``backup_label`` as ``pg_backup_stop``
returned it, ``pg_wal/`` with the segments from the start to the stop LSN (each marked
``.done`` in ``archive_status``) and a ``backup_manifest`` (file sizes and the WAL range)
that the restore checks with ``pg_verifybackup``. It restores exactly like a Physical
set: starting the server replays that WAL from ``backup_label`` to the stop point.

Steps, all in one session (the non-exclusive backup API of PostgreSQL 15 belongs to
the session that started it):

1. a temporary physical replication slot with ``immediately_reserve``: from now on the
   server keeps every WAL segment from its redo pointer on (checkpoints during the copy
   would otherwise recycle the segments the backup needs);
2. ``pg_backup_start(label, fast => true)`` (an immediate checkpoint): the start LSN;
3. the copy, with a ``SELECT 1`` every few seconds so that a dead server is noticed
   before the copy ends; or, where the data directory's file system makes copy-on-write
   clones (:mod:`rdsbackup.engines.reflink`), a clone of every file into a stage beside
   it, which tar reads after step 4: the server is then in backup mode for as long as
   the clones take (milliseconds a file), not for the whole copy;
4. ``pg_backup_stop(wait_for_archive => false)``: the stop LSN, ``backup_label`` and
   ``tablespace_map`` (user tablespaces are refused, so a non-empty map fails the set);
5. with ``fingerprint``: a restore point that snapshots of every user database match
   (:mod:`rdsbackup.engines.postgres.restore_point`; writes to user tables wait for
   it), which the set's WAL then ends at instead of the stop LSN;
6. the WAL segments, read as the owner too (the last one, cut at the restore point,
   through ``pg_read_binary_file``); then the slot is dropped.

On any failure (the sink, the tool, the server) the tool is killed, ``pg_backup_stop``
is called unless it already ran, the slot is dropped, and the session ends (which
would end the backup and drop the temporary slot by itself anyway).

``extra["in_backup_seconds"]`` is how long the server was in backup mode (from calling
``pg_backup_start`` to the return of ``pg_backup_stop``; full-page writes are forced for
that long); ``extra["wal_segments"]`` how many WAL segments the set holds;
``extra["copy"]`` ``reflink`` or ``stream``, and ``extra["cloned_bytes"]`` with clones.
"""

from __future__ import annotations

import re
import secrets
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from rdsbackup.chunks import chunk_stream
from rdsbackup.engines.base import (
    BackupResult,
    EngineError,
    ObjectSink,
    ProgressCallback,
    ServerAccess,
    UnsupportedPlan,
)
from rdsbackup.engines.postgres import restore_point
from rdsbackup.engines.postgres.common import (
    Connection,
    pg_binary,
    scalar,
    server_version,
)
from rdsbackup.engines.postgres.datadir import (
    END_OF_ARCHIVE,
    Copied,
    backup_manifest,
    dir_member,
    file_member,
    tar_bytes,
    tar_chunks,
    wal_segments,
    walk,
)
from rdsbackup.engines.postgres.logical import user_databases
from rdsbackup.engines.postgres.physical import BASE_TAR, MANIFEST_FILE
from rdsbackup.engines.reflink import CloneStage
from rdsbackup.engines.tools import CHUNK, ToolProcess, find_binary, last_error_line, tool_version

PING_SECONDS = 5.0
_TIMELINE = re.compile(r"^START TIMELINE: (\d+)$", re.MULTILINE)
_SYSTEM_ID = re.compile(r"^Database system identifier:\s+(\d+)$", re.MULTILINE)
_USE_PHYSICAL = "use BackupMethod=Physical"


def local_data_dir(access: ServerAccess) -> Path:
    """``access.data_dir`` when it looks like a data directory on this machine."""
    data_dir = access.data_dir
    if data_dir is None:
        raise UnsupportedPlan(
            "method",
            "Snapshot backups copy the data directory, which must be on this machine; "
            f"no local data directory is known for this instance: {_USE_PHYSICAL}",
        )
    if not (data_dir / "PG_VERSION").is_file():
        raise UnsupportedPlan(
            "method",
            f"Snapshot backups copy the data directory, which must be on this machine: "
            f"{data_dir} is not a PostgreSQL data directory here; {_USE_PHYSICAL}",
        )
    return data_dir


def check_snapshot(conn: Connection, access: ServerAccess) -> None:
    """Refuse (UnsupportedPlan "method") unless the server can take a Snapshot here."""
    data_dir = local_data_dir(access)
    if int(scalar(conn, "SHOW server_version_num")) < 150000:
        raise UnsupportedPlan("method", f"Snapshot backups need PostgreSQL 15+; {_USE_PHYSICAL}")
    if scalar(conn, "SELECT pg_is_in_recovery()"):
        raise UnsupportedPlan("method", f"Snapshot backups of a standby: {_USE_PHYSICAL}")
    if int(scalar(conn, "SELECT current_setting('max_replication_slots')::int")) < 1:
        raise UnsupportedPlan(
            "method",
            "Snapshot backups keep their WAL with a replication slot: set max_replication_slots",
        )
    try:
        server_dir = str(scalar(conn, "SHOW data_directory"))
        # the first field of pg_control, read by the server from the folder it runs in
        head = bytes(scalar(conn, "SELECT pg_read_binary_file('global/pg_control', 0, 8)"))
    except psycopg.errors.InsufficientPrivilege as e:
        raise UnsupportedPlan("method", f"Snapshot backups need a superuser: {e}") from e
    system_id = str(int.from_bytes(head, sys.byteorder))
    if Path(server_dir).resolve() != data_dir.resolve():
        raise UnsupportedPlan(
            "method",
            f"the server's data directory is {server_dir}, not {data_dir}; {_USE_PHYSICAL}",
        )
    local_id = _local_system_identifier(data_dir, access.os_user)
    if local_id != system_id:
        raise UnsupportedPlan(
            "method",
            f"{data_dir} belongs to another server (system identifier {local_id}, the "
            f"server's is {system_id}); {_USE_PHYSICAL}",
        )


def _local_system_identifier(data_dir: Path, os_user: str | None) -> str:
    """The system identifier in ``data_dir``'s pg_control, read as ``os_user``."""
    args = [pg_binary("pg_controldata"), f"--pgdata={data_dir}"]
    with ToolProcess(args, cwd=Path("/"), os_user=os_user) as tool:
        out = tool.stdout.read().decode("utf-8", "replace")
        code = tool.wait()
    found = _SYSTEM_ID.search(out)
    if code != 0 or found is None:
        raise UnsupportedPlan(
            "method",
            f"cannot read {data_dir} as {os_user or 'this service'}: "
            f"{last_error_line(list(tool.lines))}",
        )
    return found[1]


def expected_bytes(conn: Connection, access: ServerAccess) -> int:
    """The data directory as tar lays it out, one WAL segment, and a little more."""
    segment = int(scalar(conn, restore_point.SEGMENT_SIZE))
    return tar_bytes(walk(local_data_dir(access))) + segment + 64 * 1024


def snapshot_backup(
    conn: Connection,
    access: ServerAccess,
    sink: ObjectSink,
    on_phase: ProgressCallback,
    *,
    reflink: bool = True,
    fingerprint: bool = False,
) -> BackupResult:
    """Take a Snapshot set into ``sink`` over ``conn`` (autocommit, used by nobody else).

    ``reflink``: clone the files where the file system can (else stream them).
    ``fingerprint``: end the set's WAL at a restore point whose tables are fingerprinted
    (:mod:`rdsbackup.engines.postgres.restore_point`)."""
    data_dir = local_data_dir(access)
    for setting in ("statement_timeout", "lock_timeout", "idle_session_timeout"):
        conn.execute("SELECT set_config(%s, '0', false)", (setting,))
    stage = CloneStage.beside(data_dir) if reflink else None
    with ExitStack() as readers:
        marks = restore_point.Fingerprinting(conn, access, readers) if fingerprint else None
        run = _Run(conn, data_dir, access.os_user, stage, marks)
        try:
            run.start()
            on_phase("Uploading")
            with closing(chunk_stream(run.archive(), CHUNK)) as stream:
                sink.put(BASE_TAR, stream)
            if not run.finished:
                raise EngineError(f"the sink stopped reading {BASE_TAR} before its end")
        finally:
            run.clean_up()
            if stage is not None:
                stage.remove()
        result = BackupResult(
            engine_version=server_version(conn),
            databases=user_databases(conn),
            tool_versions={"tar": tool_version(find_binary("tar"))},
            consistent_position={
                "start_lsn": run.start_lsn,
                "stop_lsn": run.stop_lsn,
                "timeline": str(run.timeline),
            },
            consistent_time=run.stopped_at,
            extra={
                "copy": "stream" if stage is None else "reflink",
                "in_backup_seconds": f"{run.in_backup_seconds:.3f}",
                "wal_segments": str(len(run.segments)),
                **({} if stage is None else {"cloned_bytes": str(stage.bytes_cloned)}),
            },
        )
        return marks.apply(result) if marks else result


@dataclass
class _Run:
    """One Snapshot in progress on ``conn``; ``clean_up`` undoes whatever is left."""

    conn: Connection
    data_dir: Path
    os_user: str | None
    stage: CloneStage | None = None
    marks: restore_point.Fingerprinting | None = None
    """Makes the restore point the set's WAL ends at, once the backup has stopped."""
    point: restore_point.RestorePoint | None = None
    slot: str = field(default_factory=lambda: f"rdsbackup_{secrets.token_hex(8)}")
    slot_made: bool = False
    in_backup: bool = False
    finished: bool = False
    start_lsn: str = ""
    stop_lsn: str = ""
    timeline: int = 0
    segments: list[str] = field(default_factory=list)
    stopped_at: datetime | None = None
    in_backup_seconds: float = 0.0
    _began: float = 0.0

    def start(self) -> None:
        self.conn.execute(
            "SELECT pg_create_physical_replication_slot(%s, immediately_reserve => true,"
            " temporary => true)",
            (self.slot,),
        )
        self.slot_made = True
        label = f"rdsbackup {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        self._began = time.monotonic()
        self.in_backup = True
        self.start_lsn = str(scalar(self.conn, "SELECT pg_backup_start(%s, true)::text", (label,)))

    def archive(self) -> Iterator[bytes]:
        """``base.tar``, produced as the sink reads it; stops the backup on the way
        (with clones: before the first byte, the clones being the copy)."""
        copied = Copied()
        if self.stage is None:
            yield from self._files(self.data_dir, [e.path for e in walk(self.data_dir)], copied)
            label, segment_size = self._stop()
            self._mark()
        else:
            paths = self._clone(self.stage)
            label, segment_size = self._stop()
            self._mark()
            yield from self._files(self.stage.root, paths, copied)
        yield file_member("backup_label", label, copied)
        yield dir_member("pg_wal")
        yield dir_member("pg_wal/archive_status")
        yield from self._wal(segment_size, copied)
        self._drop_slot()
        yield file_member(MANIFEST_FILE, self._manifest(copied))
        yield END_OF_ARCHIVE
        self.finished = True

    def _files(self, root: Path, paths: list[str], copied: Copied) -> Iterator[bytes]:
        next_ping = time.monotonic() + PING_SECONDS
        for chunk in tar_chunks(root, paths, copied, os_user=self.os_user, vanish_ok=True):
            yield chunk
            if time.monotonic() >= next_ping:
                self.conn.execute("SELECT 1")  # fail now, not at the end, if the server died
                next_ping = time.monotonic() + PING_SECONDS

    def _clone(self, stage: CloneStage) -> list[str]:
        """Clone the data directory's folders and files (pg_control last) into
        ``stage``; returns the paths cloned (files removed meanwhile are left out)."""
        paths: list[str] = []
        for entry in walk(self.data_dir):
            source = self.data_dir / entry.path
            try:
                if entry.is_dir:
                    stage.make_dir(entry.path, stat.S_IMODE(source.stat().st_mode))
                else:
                    stage.clone(source, entry.path)
            except FileNotFoundError:
                continue  # a dropped relation or database, as tar's --ignore-failed-read
            paths.append(entry.path)
        return paths

    def _mark(self) -> None:
        if self.marks is not None:
            self.point = self.marks.mark()

    def _stop(self) -> tuple[bytes, int]:
        segment_size = int(scalar(self.conn, restore_point.SEGMENT_SIZE))
        row = self.conn.execute(
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(wait_for_archive => false)"
        ).fetchone()
        self.in_backup = False
        self.stopped_at = datetime.now(UTC)
        self.in_backup_seconds = time.monotonic() - self._began
        assert row is not None
        self.stop_lsn, label, tablespace_map = str(row[0]), str(row[1]), str(row[2] or "")
        if tablespace_map.strip():
            raise EngineError("a tablespace was created during the backup; take it again")
        found = _TIMELINE.search(label)
        if found is None:
            raise EngineError("pg_backup_stop returned a backup_label without START TIMELINE")
        self.timeline = int(found[1])
        return label.encode(), segment_size

    def _wal(self, segment_size: int, copied: Copied) -> Iterator[bytes]:
        status = self.conn.execute(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        ).fetchone()
        if status is None or status[0] == "lost":
            raise EngineError(
                "the server removed WAL the backup needs (max_slot_wal_keep_size?); take it again"
            )
        end = self.stop_lsn if self.point is None else self.point.lsn
        self.segments = wal_segments(self.timeline, self.start_lsn, end, segment_size)
        whole = self.segments if self.point is None else self.segments[:-1]
        paths = [f"pg_wal/{name}" for name in whole]
        history = f"pg_wal/{self.timeline:08X}.history"
        if self.timeline > 1 and (self.data_dir / history).is_file():
            paths.append(history)
        yield from tar_chunks(self.data_dir, paths, copied, os_user=self.os_user, vanish_ok=False)
        if self.point is not None:  # the last segment ends at the restore point
            last = self.segments[-1]
            yield from restore_point.segment_member(self.conn, last, segment_size, end)
        for name in self.segments:
            yield file_member(f"pg_wal/archive_status/{name}.done", b"")

    def _manifest(self, copied: Copied) -> bytes:
        return backup_manifest(copied, self.timeline, self.start_lsn, self.stop_lsn)

    def _drop_slot(self) -> None:
        self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        self.slot_made = False

    def clean_up(self) -> None:
        """After a failure: end the backup and drop the slot, as far as the session
        still works (if it does not, the server does both when the session ends)."""
        if self.in_backup:
            with suppress(psycopg.Error):
                self.conn.execute("SELECT pg_backup_stop(wait_for_archive => false)")
            self.in_backup = False
        if self.slot_made:
            with suppress(psycopg.Error):
                self._drop_slot()
