"""WAL backups: ``pg_receivewal --slot --no-loop`` into a spool folder, and point-in-time
recovery with ``recovery_target_time``.

Why pg_receivewal and not ``archive_command``: it works for any server the service can
reach with a replication connection (not only the local ones whose configuration it
writes), and its physical replication slot makes the server keep every segment not yet
received, so a restart of the tool (or of the service) resumes where it stopped with no
gap. The cost, a slot that keeps WAL while nobody streams, is bounded by dropping the
slot when log backups are switched off (:func:`drop_slot`).

pg_receivewal writes the current segment as ``<name>.partial`` and renames it when it
is complete, so every file named like a segment or a timeline history file is complete.
Each segment's commit times come from ``pg_waldump`` (run with ``TZ=UTC``).

Recovery copies the needed files into a folder inside the restored data directory
(readable by the server's OS user wherever the service keeps its scratch space), points
``restore_command`` at it, and sets ``recovery_target_time`` with
``recovery_target_inclusive = off`` and ``recovery_target_action = promote``; once the
server has promoted, the settings and the folder are removed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import struct
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from rdsbackup.engines.base import EngineError, ServerAccess, ServerUnavailable, UnsupportedPlan
from rdsbackup.engines.logs import (
    LINEAGE_END,
    LINEAGE_START,
    LogFile,
    LogStreamer,
    RecoveryTarget,
)
from rdsbackup.engines.postgres.common import pg_binary, scalar, session, tool_env
from rdsbackup.engines.postgres.datadir import parse_lsn
from rdsbackup.engines.tools import ToolProcess, last_error_line

DEFAULT_SEGMENT_BYTES = 16 << 20
LONG_HEADER = struct.Struct("<HHIQI4xQ")
"""A segment's first page header: magic, info, timeline, page address, remaining
length, padding, then the system identifier (XLogLongPageHeaderData)."""
XLP_LONG_HEADER = 0x0002
SEGMENT = re.compile(r"^(?P<tl>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})$")
HISTORY = re.compile(r"^(?P<tl>[0-9A-F]{8})\.history$")
_XACT_TIME = re.compile(
    r"desc: (?:COMMIT|ABORT)(?:_PREPARED)?\b.*?"
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)
RECOVERY_WAL = "rdsbackup_recovery_wal"
"""The folder inside a restored data directory that ``restore_command`` reads."""
RECOVERY_SETTINGS = (
    "restore_command",
    "recovery_target_time",
    "recovery_target_inclusive",
    "recovery_target_action",
    "recovery_target_timeline",
)
UTC_ENV = {"TZ": "UTC"}


def slot_name(spool: Path) -> str:
    """The replication slot of the stream spooled in ``spool`` (named by the instance)."""
    return "rdsbackup_" + re.sub(r"[^a-z0-9_]", "_", spool.name.lower())[:50]


def check_log_source(access: ServerAccess) -> None:
    with session(access) as conn:
        level = str(scalar(conn, "SHOW wal_level"))
        senders = int(scalar(conn, "SHOW max_wal_senders"))
        slots = int(scalar(conn, "SHOW max_replication_slots"))
        may = bool(
            scalar(
                conn, "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
            )
        )
    if level not in ("replica", "logical"):
        raise UnsupportedPlan("logs", f"wal_level is {level}; WAL backups need replica")
    if senders < 1 or slots < 1:
        raise UnsupportedPlan(
            "logs", "WAL backups need max_wal_senders and max_replication_slots of at least 1"
        )
    if not may:
        raise UnsupportedPlan("logs", f"{access.user} lacks the REPLICATION attribute")


def switch_log(access: ServerAccess) -> None:
    with session(access) as conn:
        scalar(conn, "SELECT pg_switch_wal()::text")


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def segment_name(timeline: int, lsn: int, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> str:
    seg = lsn // segment_bytes
    per_id = 0x100000000 // segment_bytes
    return f"{timeline:08X}{seg // per_id:08X}{seg % per_id:08X}"


def base_log(position: Mapping[str, str]) -> tuple[int, str] | None:
    """The segment holding a Physical/Snapshot set's ``start_lsn`` on its timeline."""
    timeline, start = position.get("timeline", ""), position.get("start_lsn", "")
    if not timeline.isdigit() or not start:
        return None
    size = int(position.get("wal_segment_size", DEFAULT_SEGMENT_BYTES))
    return int(timeline), segment_name(int(timeline), parse_lsn(start), size)


def parse_segment(path: Path) -> LogFile:
    """A complete segment's positions (its size is the server's segment size) and the
    times of its first and last transaction end (commit or abort)."""
    m = SEGMENT.match(path.name)
    if m is None:
        raise EngineError(f"{path.name!r} is not a WAL segment name")
    size = path.stat().st_size
    if size <= 0 or size & (size - 1):
        raise EngineError(f"{path.name}: {size} bytes is not a WAL segment size")
    per_id = 0x100000000 // size
    sequence = int(m["log"], 16) * per_id + int(m["seg"], 16)
    times = transaction_times(path)
    extra = {"wal_segment_size": str(size)}
    cluster = system_identifier(path)
    if cluster:  # segments of one cluster continue each other; another cluster's do not
        extra[LINEAGE_START] = extra[LINEAGE_END] = f"system_identifier={cluster}"
    return LogFile(
        name=path.name,
        path=path,
        sequence=sequence,
        timeline=int(m["tl"], 16),
        start_position=lsn_text(sequence * size),
        end_position=lsn_text((sequence + 1) * size),
        first_time=times[0] if times else None,
        last_time=times[-1] if times else None,
        extra=extra,
    )


def system_identifier(path: Path) -> str:
    """The database system identifier in the segment's long page header ("" when the
    header is not one): initdb's, the same for every segment a cluster writes."""
    with path.open("rb") as f:
        head = f.read(LONG_HEADER.size)
    if len(head) < LONG_HEADER.size:
        return ""
    _magic, info, _tli, _addr, _rem, sysid = LONG_HEADER.unpack(head)
    return str(sysid) if info & XLP_LONG_HEADER and sysid else ""


def transaction_times(path: Path) -> list[datetime]:
    """Commit/abort times in the segment, by ``pg_waldump --rmgr=Transaction``. The tool
    ends with an error at the segment's unwritten tail or at a record continued in the
    next segment; what it printed before is what counts."""
    out = subprocess.run(
        [pg_binary("pg_waldump"), "--rmgr=Transaction", str(path)],
        capture_output=True,
        text=True,
        env=UTC_ENV | {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        timeout=120,
        check=False,
    )
    found = []
    for m in _XACT_TIME.finditer(out.stdout):
        stamp = m[1]
        fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in stamp else "%Y-%m-%d %H:%M:%S"
        found.append(datetime.strptime(stamp, fmt).replace(tzinfo=UTC))
    return sorted(found)


class WalStreamer(LogStreamer):
    """``pg_receivewal --slot --no-loop`` into ``spool``. It resumes by itself: from the
    ``.partial`` segment left in the spool, else from the slot's position (which the
    server keeps WAL for), so ``resume_after`` needs no flag of its own."""

    def __init__(self, access: ServerAccess, spool: Path) -> None:
        self.access, self.spool = access, spool
        self.slot = slot_name(spool)
        self._tool: ToolProcess | None = None
        self._reported: set[str] = set()

    def _args(self, *extra: str) -> list[str]:
        return [
            pg_binary("pg_receivewal"),
            f"--directory={self.spool}",
            f"--slot={self.slot}",
            "--no-password",
            "--status-interval=1",
            *extra,
        ]

    def start(self) -> None:
        env = tool_env(self.access)
        created = ToolProcess(self._args("--create-slot", "--if-not-exists"), env=env)
        code = created.wait(60)
        if code != 0:
            why = last_error_line(list(created.lines))
            raise ServerUnavailable(f"pg_receivewal --create-slot exited with {code}: {why}")
        self._tool = ToolProcess(self._args("--no-loop"), stdout=subprocess.DEVNULL, env=env)

    def completed(self) -> list[LogFile]:
        histories, segments = [], []
        for path in self.spool.iterdir():
            if path.name in self._reported:
                continue
            if HISTORY.match(path.name):
                histories.append(path)
            elif SEGMENT.match(path.name):
                segments.append(path)
        done = [
            LogFile(name=p.name, path=p, sequence=0, timeline=int(p.name[:8], 16))
            for p in sorted(histories)
        ]
        done += [parse_segment(p) for p in sorted(segments)]
        self._reported.update(f.name for f in done)
        return done

    def exited(self) -> str | None:
        if self._tool is None or self._tool.proc.poll() is None:
            return None
        code = self._tool.wait()
        return f"{self._tool.name} exited with {code}: {last_error_line(list(self._tool.lines))}"

    def stop(self) -> None:
        if self._tool is not None:
            self._tool.kill()


def drop_slot(access: ServerAccess, spool: Path) -> None:
    with session(access) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s AND NOT active",
            (slot_name(spool),),
        )


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def prepare_recovery(data_dir: Path, target: RecoveryTarget) -> None:
    """The fetched files are moved (not copied) into the data directory: a rename where
    both are on one file system, so a GiB of WAL is not written once more."""
    wal = data_dir / RECOVERY_WAL
    wal.mkdir(mode=0o700)
    for f in target.logs:
        shutil.move(target.log_dir / f.name, wal / f.name)
    stop = target.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    settings = {
        "restore_command": f"cp {shlex.quote(str(wal))}/%f %p",
        "recovery_target_time": stop,
        "recovery_target_inclusive": "off",
        "recovery_target_action": "promote",
        "recovery_target_timeline": "current",
    }
    with (data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write("\n# point-in-time recovery by rdsbackup; removed after promotion\n")
        for name, value in settings.items():
            conf.write(f"{name} = {_conf_value(value)}\n")
    (data_dir / "recovery.signal").touch()


def finish_recovery(access: ServerAccess, target: RecoveryTarget, timeout: float = 3600) -> None:
    """Wait for the promotion that ends the recovery, then remove its settings."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with session(access) as conn:
                if not scalar(conn, "SELECT pg_is_in_recovery()"):
                    data_dir = Path(str(scalar(conn, "SHOW data_directory")))
                    for name in RECOVERY_SETTINGS:
                        conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
                    scalar(conn, "SELECT pg_reload_conf()")
                    break
        except ServerUnavailable as e:
            raise EngineError(f"the server stopped while replaying WAL: {e}") from e
        if time.monotonic() > deadline:
            raise EngineError(f"WAL replay to {target.time:%Y-%m-%dT%H:%M:%SZ} did not end")
        time.sleep(0.2)
    shutil.rmtree(data_dir / RECOVERY_WAL, ignore_errors=True)
