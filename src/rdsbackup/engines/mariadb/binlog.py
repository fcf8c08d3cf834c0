"""Binary-log backups: ``mariadb-binlog --read-from-remote-server --raw --stop-never``
streamed into a spool folder, each file reported once the tool has moved on to the
next one (and its events parse to the end), and point-in-time recovery by piping
``mariadb-binlog --start-position --stop-datetime`` into the restored server. Every
tool runs with ``TZ=UTC``: ``--stop-datetime`` is read in the local time zone."""

from __future__ import annotations

import contextlib
import itertools
import re
import secrets
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from rdsbackup.engines.base import EngineError, ServerAccess, UnsupportedPlan
from rdsbackup.engines.logs import (
    LINEAGE_END,
    LINEAGE_START,
    LogFile,
    LogStreamer,
    RecoveryTarget,
)
from rdsbackup.engines.mariadb.physical import check_tool
from rdsbackup.engines.mariadb.sql import query
from rdsbackup.engines.tools import ToolProcess, find_binary, last_error_line, mysql_option_file

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")
"""timestamp, type, server_id, event_size, log_pos, flags."""
QUERY_EVENT, XID_EVENT, GTID_EVENT, GTID_LIST_EVENT = 2, 16, 162, 163
_NUMBERED = re.compile(r"(?P<base>.+)\.(?P<seq>\d{6,})$")
UTC_ENV = {"TZ": "UTC"}


def binlog_binary() -> str:
    return find_binary("mariadb-binlog", "mysqlbinlog")


def check_log_source(access: ServerAccess) -> None:
    ((log_bin, fmt),) = query(access, "SELECT @@log_bin, @@binlog_format")
    if not int(log_bin):
        raise UnsupportedPlan("logs", "the server's binary log is off (start it with --log-bin)")
    if str(fmt).upper() != "ROW":
        raise UnsupportedPlan("logs", f"binlog_format is {fmt}; log backups need ROW")
    grants = " ".join(str(r[0]).upper() for r in query(access, "SHOW GRANTS"))
    if "ALL PRIVILEGES ON *.*" in grants:
        return
    missing = [p for p in ("REPLICATION SLAVE", "BINLOG MONITOR") if p not in grants]
    if missing:
        raise UnsupportedPlan("logs", f"{access.user} lacks {' and '.join(missing)}")


def switch_log(access: ServerAccess) -> None:
    """``FLUSH BINARY LOGS``, unless the current binlog holds no transaction yet: an
    idle server would otherwise get a new, empty file every ``log_switch_seconds``."""
    status = query(access, "SHOW MASTER STATUS")
    if status:
        head = query(access, "SHOW BINLOG EVENTS IN %s LIMIT 8", (str(status[0][0]),))
        if not any(str(event[2]) == "Gtid" for event in head):
            return
    query(access, "FLUSH BINARY LOGS")


def oldest_binlog(access: ServerAccess) -> str:
    rows = query(access, "SHOW BINARY LOGS")
    if not rows:
        raise EngineError(f"{access.host}:{access.port} has no binary log")
    return str(rows[0][0])


def successor(name: str) -> str:
    m = _NUMBERED.match(name)
    if m is None:
        raise EngineError(f"{name!r} is not a binary log name")
    seq = m["seq"]
    return f"{m['base']}.{int(seq) + 1:0{len(seq)}d}"


def parse_binlog(path: Path) -> LogFile | None:
    """The file's positions, commit times and GTID states; None when its last event is
    cut short (or it is not a binary log).

    The binlog state a file starts from is its GTID_LIST event (the last GTID of each
    domain and server); the state it ends at is that list updated by every GTID event
    in it. The next file's list must equal it: else the server's log did not continue
    (``RESET MASTER``, another server on the same address)."""
    data = path.read_bytes()
    m = _NUMBERED.match(path.name)
    if not data.startswith(MAGIC) or m is None:
        return None
    pos, first, last = len(MAGIC), None, None
    extra: dict[str, str] = {}
    state: dict[tuple[int, int], int] | None = None
    while pos < len(data):
        if len(data) - pos < HEADER.size:
            return None
        stamp, kind, server, size, _end, _flags = HEADER.unpack_from(data, pos)
        if size < HEADER.size or pos + size > len(data):
            return None
        body = data[pos + HEADER.size : pos + size]
        if kind == XID_EVENT or (kind == QUERY_EVENT and _is_commit(body)):
            when = datetime.fromtimestamp(stamp, UTC)
            first = first or when
            last = when
        elif kind == GTID_LIST_EVENT and state is None:
            state = _gtid_list(body)
            extra["gtid_list"] = _gtid_text(state)
        elif kind == GTID_EVENT and state is not None and len(body) >= 12:
            seq, domain = struct.unpack_from("<QI", body)
            state[(domain, server)] = seq
        pos += size
    if state is not None:
        extra[LINEAGE_START] = extra["gtid_list"]
        extra[LINEAGE_END] = _gtid_text(state)
    return LogFile(
        name=path.name,
        path=path,
        sequence=int(m["seq"]),
        start_position=f"{path.name}:{len(MAGIC)}",
        end_position=f"{path.name}:{pos}",
        first_time=first,
        last_time=last,
        extra=extra,
    )


def _is_commit(body: bytes) -> bool:
    return body.endswith(b"COMMIT") or body[:-4].endswith(b"COMMIT")  # CRC32 or none


def _gtid_list(body: bytes) -> dict[tuple[int, int], int]:
    """A GTID_LIST event's ``(domain, server) -> seq`` (count u32, low 28 bits; then
    domain u32, server u32, seq u64 each)."""
    if len(body) < 4:
        return {}
    count = struct.unpack_from("<I", body)[0] & 0x0FFFFFFF
    found: dict[tuple[int, int], int] = {}
    for i in range(count):
        off = 4 + 16 * i
        if off + 16 > len(body):
            break
        domain, server, seq = struct.unpack_from("<IIQ", body, off)
        found[(domain, server)] = seq
    return found


def _gtid_text(state: dict[tuple[int, int], int]) -> str:
    return ",".join(f"{d}-{s}-{q}" for (d, s), q in sorted(state.items()))


class BinlogStreamer(LogStreamer):
    """``mariadb-binlog --raw --stop-never`` from ``first_file`` into ``spool``."""

    def __init__(self, access: ServerAccess, spool: Path, first_file: str | None) -> None:
        self.access, self.spool, self.first_file = access, spool, first_file
        self.server_id = (1 << 20) + secrets.randbelow((1 << 31) - (1 << 21))
        self._options = contextlib.ExitStack()
        self._tool: ToolProcess | None = None
        self._reported = -1

    def start(self) -> None:
        first = self.first_file or oldest_binlog(self.access)
        a = self.access
        options = self._options.enter_context(mysql_option_file(a.host, a.port, a.user, a.password))
        args = [
            binlog_binary(),
            f"--defaults-extra-file={options}",
            "--read-from-remote-server",
            "--raw",
            "--stop-never",
            f"--stop-never-slave-server-id={self.server_id}",
            f"--result-file={self.spool}/",
            first,
        ]
        self._tool = ToolProcess(args, stdout=subprocess.DEVNULL, env=UTC_ENV, cwd=self.spool)

    def completed(self) -> list[LogFile]:
        numbered = sorted(
            (int(m["seq"]), p)
            for p in self.spool.iterdir()
            if (m := _NUMBERED.match(p.name)) is not None
        )
        done: list[LogFile] = []
        for (seq, path), _newer in itertools.pairwise(numbered):
            if seq <= self._reported:
                continue
            parsed = parse_binlog(path)
            if parsed is None:
                break
            done.append(parsed)
            self._reported = seq
        return done

    def exited(self) -> str | None:
        if self._tool is None or self._tool.proc.poll() is None:
            return None
        code = self._tool.wait()
        self._options.close()
        return f"{self._tool.name} exited with {code}: {last_error_line(list(self._tool.lines))}"

    def stop(self) -> None:
        if self._tool is not None:
            self._tool.kill()
        self._options.close()


def log_streamer(access: ServerAccess, spool: Path, resume_after: LogFile | None) -> LogStreamer:
    return BinlogStreamer(access, spool, successor(resume_after.name) if resume_after else None)


def finish_recovery(access: ServerAccess, target: RecoveryTarget) -> None:
    """Replay the logs from the base set's position to just before ``target.time``."""
    base_file = target.base_position.get("binlog_file", "")
    base_pos = target.base_position.get("binlog_pos", "")
    names = [f.name for f in target.logs]
    if base_file not in names or not base_pos.isdigit():
        raise EngineError(f"the logs do not hold the base set's position {base_file}:{base_pos}")
    files = [str(target.log_dir / n) for n in names[names.index(base_file) :]]
    stop = target.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    replay = [binlog_binary(), f"--start-position={base_pos}", f"--stop-datetime={stop}", *files]
    with mysql_option_file(access.host, access.port, access.user, access.password) as options:
        client = [find_binary("mariadb", "mysql"), f"--defaults-extra-file={options}"]
        with ToolProcess(replay, env=UTC_ENV) as log:
            with ToolProcess(
                [*client, "--binary-mode"], stdin=log.stdout, stdout=subprocess.DEVNULL
            ) as apply:
                log.stdout.close()
                check_tool(apply)
            check_tool(log)
