"""Reading and loading ``mariadb-dump`` streams.

:class:`DumpScanner` passes a dump through to the sink unchanged while noting what it
holds (the database sections, the tables whose structure or rows it carries, whether it
ended with mariadb-dump's completion line). :class:`SectionFilter` keeps only the
sections of chosen databases on the way back, and :func:`load_object` feeds one stored
dump object to a ``mariadb`` client.

A dump written with ``--databases`` opens each database with a ``-- Current Database:
`name``` line; a table's structure opens with ``-- Table structure for table `name```
(a sequence's: ``-- Sequence structure for `name```), its rows with ``-- Dumping data
for table `name```. Marks are recognised only at the start of a line outside
``DELIMITER ;;`` blocks (routine and trigger bodies). mariadb-dump writes every row
value on the line of its INSERT (newlines inside values are escaped), so no data line
can look like a mark.

Sets written by the first version of this engine hold one object, ``dump.sql`` (every
database in one ``mariadb-dump --single-transaction`` stream); :func:`restore_logical`
still loads them.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from rdsbackup.engines.base import EngineError, ObjectSource, ServerAccess
from rdsbackup.engines.mariadb.physical import check_tool
from rdsbackup.engines.tools import CHUNK, ToolProcess, find_binary, mysql_option_file

DUMP_OBJECT = "dump.sql"
DONE_MARKER = b"\n-- Dump completed"
SECTION_MARK = b"-- Current Database: `"
TABLE_MARK = b"-- Table structure for table `"
SEQUENCE_MARK = b"-- Sequence structure for `"
DATA_MARK = b"-- Dumping data for table `"
TAIL_BYTES = 16 * 1024
_CANDIDATE = re.compile(rb"\n[-D]")
_MARK_LINE = 1024
"""Longest line a mark can be (a 64-character name, each character quoted, fits)."""


def dump_binary() -> str:
    return find_binary("mariadb-dump", "mysqldump")


def client_binary() -> str:
    return find_binary("mariadb", "mysql")


def quoted_name(line: bytes, mark: bytes) -> str | None:
    """The name a ``mark`name``` line carries (backticks doubled), or None."""
    if not (line.startswith(mark) and line.endswith(b"`")):
        return None
    return line[len(mark) : -1].replace(b"``", b"`").decode("utf-8", "replace")


class Splitter:
    """Cuts a dump into pieces: runs of plain bytes, and whole *candidate* lines (lines
    of at most 1 KiB that start with ``-`` or ``D``: only these can be marks or
    ``DELIMITER``). mariadb-dump writes a line per row, so finding the few candidates
    with ``bytes.find`` instead of looking at every line is what keeps this cheap."""

    def __init__(self) -> None:
        self.held = b""
        """The start of a candidate line that continues in the next chunk."""
        self.mid_line = False
        """The last chunk ended inside a plain line."""

    def pieces(self, data: bytes) -> Iterator[tuple[bool, bytes]]:
        """``(is_candidate_line, bytes)`` for ``data``, in order, all bytes included
        (except a held-back candidate start)."""
        buf, self.held = (self.held + data, b"") if self.held else (data, b"")
        pos = 0
        if self.mid_line:
            pos = buf.find(b"\n") + 1
            if pos == 0:
                yield False, buf
                return
            yield False, buf[:pos]
            self.mid_line = False
        while pos < len(buf):
            start = _next_candidate(buf, pos)
            if start < 0:
                yield False, buf[pos:]
                self.mid_line = not buf.endswith(b"\n")
                return
            if start > pos:
                yield False, buf[pos:start]
            end = buf.find(b"\n", start)
            if end < 0 and len(buf) - start <= _MARK_LINE:
                self.held = buf[start:]
                return
            if end < 0 or end - start > _MARK_LINE:  # too long to be a mark
                stop = len(buf) if end < 0 else end + 1
                yield False, buf[start:stop]
                self.mid_line = end < 0
                pos = stop
                continue
            yield True, buf[start : end + 1]
            pos = end + 1

    def finish(self) -> Iterator[tuple[bool, bytes]]:
        if self.held:
            yield False, self.held
            self.held = b""


def _next_candidate(buf: bytes, pos: int) -> int:
    """Where the next line starting with ``-`` or ``D`` begins (``pos`` is a line start)."""
    if buf[pos : pos + 1] in (b"-", b"D"):
        return pos
    found = _CANDIDATE.search(buf, pos)
    return found.start() + 1 if found else -1


class Marks:
    """Follows ``DELIMITER`` blocks (routine and trigger bodies, where nothing is a
    mark) and reads the database or table a mark line names."""

    def __init__(self) -> None:
        self.in_delimiter = False

    def read(self, line: bytes) -> tuple[bytes, str] | None:
        """``(mark, name)`` for a section or table mark line, else None."""
        body = line.rstrip(b"\r\n")
        if body.startswith(b"DELIMITER "):
            self.in_delimiter = body.rstrip() != b"DELIMITER ;"
            return None
        if self.in_delimiter:
            return None
        for mark in (SECTION_MARK, TABLE_MARK, SEQUENCE_MARK, DATA_MARK):
            name = quoted_name(body, mark)
            if name is not None:
                return mark, name
        return None


class DumpScanner:
    """Passes a dump stream through unchanged, noting its databases and the tables
    whose structure or rows it holds (in order, as ``(database, table)``; a table whose
    structure and rows are both there is noted twice) and keeping its last 16 KiB."""

    def __init__(self, inner: BinaryIO) -> None:
        self._read: Callable[[int], bytes] = getattr(inner, "read1", inner.read)
        self.databases: list[str] = []
        self.tables: list[tuple[str, str]] = []
        self.tail = b""
        self._splitter = Splitter()
        self._marks = Marks()

    def read1(self, size: int = -1) -> bytes:
        """What one read of the tool's pipe gives (at most ``size`` bytes)."""
        data = self._read(size if size > 0 else CHUNK)
        if data:
            for candidate, piece in self._splitter.pieces(data):
                if candidate:
                    self._note(piece)
            self.tail = (self.tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]
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

    def _note(self, line: bytes) -> None:
        found = self._marks.read(line)
        if found is None:
            return
        mark, name = found
        if mark == SECTION_MARK:
            self.databases.append(name)
        else:
            self.tables.append((self.databases[-1] if self.databases else "", name))

    @property
    def completed(self) -> bool:
        return DONE_MARKER in self.tail


class SectionFilter:
    """The dump's bytes, keeping the header and only the sections of ``databases``
    (everything when ``databases`` is empty)."""

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
        splitter, marks, keep = Splitter(), Marks(), True
        out: list[bytes] = []
        while chunk := self.reader.read(CHUNK):
            for candidate, piece in splitter.pieces(chunk):
                found = marks.read(piece) if candidate else None
                if found is not None and found[0] == SECTION_MARK:
                    keep = found[1] in self.wanted
                    if keep:
                        self.seen.add(found[1])
                if keep:
                    out.append(piece)
            if out:
                yield b"".join(out)
                out.clear()
        tail = b"".join(piece for _, piece in splitter.finish())
        if keep and tail:
            yield tail


def load_object(
    source: ObjectSource, name: str, target: ServerAccess, databases: tuple[str, ...]
) -> set[str]:
    """Load object ``name`` (only the sections of ``databases``, when given) into
    ``target`` with one ``mariadb`` client; returns the databases it had no section for."""
    with mysql_option_file(target.host, target.port, target.user, target.password) as options:
        args = [
            client_binary(),
            f"--defaults-extra-file={options}",
            "--binary-mode",
            "--max-allowed-packet=1G",
        ]
        with ToolProcess(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as tool:
            with source.open(name) as reader:
                sections = SectionFilter(reader, databases)
                send(sections.chunks(), tool)
            check_tool(tool)
    return sections.missing()


def restore_logical(source: ObjectSource, target: ServerAccess, databases: tuple[str, ...]) -> None:
    """Load a single-stream set's ``dump.sql`` (or only the sections of ``databases``)."""
    missing = load_object(source, DUMP_OBJECT, target, databases)
    if missing:
        raise EngineError(f"{DUMP_OBJECT} has no section for {', '.join(sorted(missing))}")


def send(chunks: Iterable[bytes], tool: ToolProcess) -> None:
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
