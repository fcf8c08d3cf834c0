"""Logical MariaDB sets: one ``mariadb-dump --single-transaction`` stream out, the
``mariadb`` client back.

The set holds a single object, ``dump.sql``: every dumped database in one consistent
snapshot. The instance strategy dumps all databases but ``mysql`` (accounts, grants
and other system tables are not carried: restoring them as tables would replace the
target's own accounts, and ``--system=users`` fails on servers with unresolvable
host accounts); ``information_schema``, ``performance_schema`` and ``sys`` are never
dumped. Each database is a section opened by a ``-- Current Database: `name``` line,
which is how a restore of some databases picks them out.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, cast

from rdsbackup.engines.base import EngineError, ObjectSink, ObjectSource, ServerAccess, ToolFailed
from rdsbackup.engines.mariadb_physical import check_tool
from rdsbackup.engines.tools import (
    CHUNK,
    ToolProcess,
    find_binary,
    last_error_line,
    mysql_option_file,
    tool_version,
)

DUMP_OBJECT = "dump.sql"
DONE_MARKER = b"\n-- Dump completed"
SECTION_MARK = b"-- Current Database: `"
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 16 * 1024
_SNAPSHOT_SIGNS = (b"CHANGE MASTER TO", SECTION_MARK)
"""mariadb-dump writes these only after its consistent snapshot is open."""
_BINLOG = re.compile(
    r"CHANGE MASTER TO MASTER_LOG_FILE='(?P<file>[^']*)', MASTER_LOG_POS=(?P<pos>\d+)"
)
_GTID = re.compile(r"gtid_slave_pos='(?P<gtid>[^']*)'")


@dataclass(frozen=True)
class LogicalOutcome:
    tool_versions: dict[str, str]
    position: dict[str, str]
    consistent_time: datetime


class DumpScanner:
    """Passes a dump stream through unchanged, keeping only its first 64 KiB and last
    16 KiB: enough to read the binlog position, the GTID and the completion line."""

    def __init__(self, inner: BinaryIO) -> None:
        self._read: Callable[[int], bytes] = getattr(inner, "read1", inner.read)
        self.head = bytearray()
        self.tail = b""
        self.snapshot_seen_at: datetime | None = None
        self.ended_at: datetime | None = None

    def read1(self, size: int = -1) -> bytes:
        """What one read of the tool's pipe gives (at most ``size`` bytes)."""
        data = self._read(size if size > 0 else CHUNK)
        self._scan(data)
        return data

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            data = self.read1(CHUNK if wanted is None else min(wanted, CHUNK))
            if not data:
                break
            parts.append(data)
            if wanted is not None:
                wanted -= len(data)
        return b"".join(parts)

    def _scan(self, data: bytes) -> None:
        if not data:
            self.ended_at = self.ended_at or datetime.now(UTC)
            return
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
            if self.snapshot_seen_at is None and any(s in self.head for s in _SNAPSHOT_SIGNS):
                self.snapshot_seen_at = datetime.now(UTC)
        self.tail = (self.tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]

    @property
    def completed(self) -> bool:
        return DONE_MARKER in self.tail

    @property
    def consistent_time(self) -> datetime:
        """Just after the snapshot opened (an upper bound): when the dump first showed it."""
        return self.snapshot_seen_at or self.ended_at or datetime.now(UTC)

    def position(self) -> dict[str, str]:
        text = (bytes(self.head) + b"\n" + self.tail).decode("utf-8", "replace")
        found: dict[str, str] = {}
        if m := _BINLOG.search(text):
            found.update(binlog_file=m["file"], binlog_pos=m["pos"])
        if (g := _GTID.search(text)) and g["gtid"]:
            found["gtid"] = g["gtid"]
        return found


def dump_binary() -> str:
    return find_binary("mariadb-dump", "mysqldump")


def dump_args(
    binary: str, options: str, databases: tuple[str, ...], *, log_bin: bool, gtid: bool
) -> list[str]:
    args = [
        binary,
        f"--defaults-extra-file={options}",
        "--single-transaction",
        "--quick",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--max-allowed-packet=1G",
    ]
    if log_bin:
        args.append("--master-data=2")
        if gtid:
            args.append("--gtid")
    if databases:
        return [*args, "--databases", *databases]
    return [*args, "--all-databases", "--ignore-database=mysql"]


def backup_logical(
    access: ServerAccess,
    databases: tuple[str, ...],
    sink: ObjectSink,
    *,
    log_bin: bool,
    gtid: bool,
) -> LogicalOutcome:
    """Dump ``databases`` (empty: every user database) into ``sink`` as ``dump.sql``."""
    binary = dump_binary()
    with mysql_option_file(access.host, access.port, access.user, access.password) as options:
        args = dump_args(binary, str(options), databases, log_bin=log_bin, gtid=gtid)
        with ToolProcess(args) as tool:
            scanner = DumpScanner(tool.stdout)
            sink.put(DUMP_OBJECT, cast(BinaryIO, scanner))
            check_tool(tool)
    if not scanner.completed:
        raise ToolFailed(
            f"mariadb-dump did not report success: {last_error_line(list(tool.lines))}"
        )
    position = scanner.position()
    if log_bin and "binlog_pos" not in position:
        raise ToolFailed("mariadb-dump wrote no binlog position although binary logging is on")
    return LogicalOutcome(
        tool_versions={"mariadb-dump": tool_version(binary)},
        position=position,
        consistent_time=scanner.consistent_time,
    )


def restore_logical(source: ObjectSource, target: ServerAccess, databases: tuple[str, ...]) -> None:
    """Load ``dump.sql`` (or only the sections of ``databases``) into ``target``."""
    client = find_binary("mariadb", "mysql")
    with mysql_option_file(target.host, target.port, target.user, target.password) as options:
        args = [
            client,
            f"--defaults-extra-file={options}",
            "--binary-mode",
            "--max-allowed-packet=1G",
        ]
        with ToolProcess(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as tool:
            with source.open(DUMP_OBJECT) as reader:
                sections = SectionFilter(reader, databases)
                _send(sections.chunks(), tool)
            check_tool(tool)
    missing = sections.missing()
    if missing:
        raise EngineError(f"{DUMP_OBJECT} has no section for {', '.join(sorted(missing))}")


class SectionFilter:
    """The dump's bytes, keeping the header and only the sections of ``databases``
    (everything when ``databases`` is empty). Section marks are recognised only at the
    start of a line outside ``DELIMITER ;;`` blocks (routine and trigger bodies)."""

    def __init__(self, reader: BinaryIO, databases: tuple[str, ...]) -> None:
        self.reader = reader
        self.wanted = set(databases)
        self.seen: set[str] = set()

    def missing(self) -> set[str]:
        return self.wanted - self.seen

    def chunks(self) -> Iterator[bytes]:
        if not self.wanted:
            while chunk := self.reader.read(CHUNK):
                yield chunk
            return
        out = bytearray()
        for piece in self._kept_pieces():
            out += piece
            if len(out) >= CHUNK:
                yield bytes(out)
                out.clear()
        if out:
            yield bytes(out)

    def _kept_pieces(self) -> Iterator[bytes]:
        keep, at_line_start, in_delimiter = True, True, False
        while piece := self.reader.readline(CHUNK):
            if at_line_start:
                if piece.startswith(b"DELIMITER "):
                    in_delimiter = piece.rstrip() != b"DELIMITER ;"
                elif not in_delimiter and (name := section_name(piece)) is not None:
                    keep = name in self.wanted
                    if keep:
                        self.seen.add(name)
            at_line_start = piece.endswith(b"\n")
            if keep:
                yield piece


def section_name(line: bytes) -> str | None:
    """The database a ``-- Current Database: `name``` line opens (backticks doubled)."""
    body = line.rstrip(b"\r\n")
    if not (line.startswith(SECTION_MARK) and line.endswith(b"\n") and body.endswith(b"`")):
        return None
    return body[len(SECTION_MARK) : -1].replace(b"``", b"`").decode("utf-8", "replace")


def _send(chunks: Iterable[bytes], tool: ToolProcess) -> None:
    """Write ``chunks`` to the tool's stdin, one chunk behind: a source that fails (a
    checksum mismatch is only known at its end) kills the tool before its last chunk
    reaches it, instead of closing stdin and letting it finish."""
    pending = b""
    try:
        for chunk in chunks:
            if pending:
                tool.stdin.write(pending)
            pending = chunk
        if pending:
            tool.stdin.write(pending)
        tool.stdin.close()
    except BrokenPipeError:
        return  # the tool stopped reading: check_tool reports why
    except BaseException:
        tool.kill()
        raise
