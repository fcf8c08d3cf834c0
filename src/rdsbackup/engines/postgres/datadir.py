"""A PostgreSQL data directory as a tar stream: what to copy, the ``tar`` tool that
reads it, and the members a Snapshot set adds to that stream.

* :func:`walk` lists the data directory with pg_basebackup's exclusions (PostgreSQL 15
  ``basebackup.c``): no ``postmaster.pid``/``postmaster.opts``, ``backup_label``,
  ``tablespace_map``, ``backup_manifest``, ``*.tmp`` configuration files,
  ``pg_internal.init*``, ``pgsql_tmp*``, temporary relations (``t<n>_<m>``), the forks of
  unlogged relations other than their init fork, the contents of ``pg_wal``,
  ``pg_replslot``, ``pg_stat_tmp``, ``pg_dynshmem``, ``pg_notify``, ``pg_serial``,
  ``pg_snapshots`` and ``pg_subtrans``. ``global/pg_control`` comes last, as in
  pg_basebackup. Symbolic links (tablespaces, a moved ``pg_wal`` aside) are refused.
* :func:`tar_chunks` runs GNU ``tar`` (as the data directory's owner) over a list of
  those paths and passes its output on without the end-of-archive blocks, so that
  more members can follow in the same archive; it records every file it passed.
  Files that vanish or change while they are read are expected (WAL replay repairs
  them); any other complaint of tar fails the copy.
* :func:`file_member`, :func:`dir_member`, :data:`END_OF_ARCHIVE` and
  :func:`backup_manifest` build the rest of the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rdsbackup.engines.base import EngineError, ToolFailed
from rdsbackup.engines.tools import CHUNK, ToolProcess, find_binary, last_error_line, private_file

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
PG_CONTROL = "global/pg_control"

_SKIP_CONTENTS = frozenset(
    {
        "pg_wal",
        "pg_replslot",
        "pg_stat_tmp",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_subtrans",
    }
)
"""Top-level folders kept empty (pg_wal gets the backup's WAL separately)."""
_SKIP_FILES = frozenset(
    {
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "tablespace_map",
        "backup_manifest",
        "postgresql.auto.conf.tmp",
        "current_logfiles.tmp",
    }
)
_RELATION = re.compile(r"^(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$")
_TEMP_RELATION = re.compile(r"^t\d+_\d+(?:_(?:fsm|vm|init))?(?:\.\d+)?$")
_DB_DIR = re.compile(r"^base/\d+$")
_BENIGN = ("file changed as we read it", "File removed before we read it", "File shrank by")
_SUMMARY = "Exiting with failure status due to previous errors"
_VANISHED = ("Cannot stat: No such file or directory", "Cannot open: No such file or directory")


@dataclass(frozen=True)
class Entry:
    path: str
    """Relative to the data directory, ``/``-separated."""
    size: int
    is_dir: bool


def _skipped_name(name: str) -> bool:
    return name.startswith(("pgsql_tmp", "pg_internal.init"))


def _unlogged_forks(names: Sequence[str]) -> set[str]:
    """Files of unlogged relations in a database folder other than their init forks."""
    with_init = {m[1] for n in names if (m := _RELATION.match(n)) and m[2] == "init"}
    return {n for n in names if (m := _RELATION.match(n)) and m[1] in with_init and m[2] != "init"}


def walk(data_dir: Path) -> list[Entry]:
    """What a Snapshot copies of ``data_dir``, parents before children, pg_control last."""
    entries: list[Entry] = []
    control: Entry | None = None
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            names = sorted(os.listdir(data_dir / rel))
        except FileNotFoundError:
            continue  # a folder removed since it was listed (a dropped database)
        except OSError as e:
            raise EngineError(f"cannot list {data_dir / rel}: {e.strerror}") from e
        skip = _unlogged_forks(names) if _DB_DIR.match(rel) else set()
        subdirs: list[str] = []
        for name in names:
            path = f"{rel}/{name}" if rel else name
            if name in skip or _skipped_name(name) or (not rel and name in _SKIP_FILES):
                continue
            if _DB_DIR.match(rel) and _TEMP_RELATION.match(name):
                continue
            if not rel and name == "pg_wal":
                continue  # added as a folder of its own, with the backup's WAL
            try:
                st = os.lstat(data_dir / path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise EngineError(
                    f"the data directory holds a symbolic link, {path}: snapshot backups copy"
                    " regular files and folders only (no tablespaces or linked folders)"
                )
            if stat.S_ISDIR(st.st_mode):
                entries.append(Entry(path, 0, True))
                if not (not rel and name in _SKIP_CONTENTS):
                    subdirs.append(path)
            elif stat.S_ISREG(st.st_mode):
                entry = Entry(path, st.st_size, False)
                if path == PG_CONTROL:
                    control = entry
                else:
                    entries.append(entry)
        stack.extend(reversed(subdirs))
    if control is None:
        raise EngineError(f"{data_dir} has no {PG_CONTROL}: it is not a PostgreSQL data directory")
    entries.append(control)
    return entries


def tar_bytes(entries: Sequence[Entry]) -> int:
    """Bytes GNU tar writes for ``entries`` (headers and padded contents)."""
    return sum(BLOCK + _padded(e.size) for e in entries)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


# -- the tar tool --------------------------------------------------------------------


@dataclass
class Copied:
    """The regular files passed into the archive so far: path -> (size, mtime)."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)


def tar_chunks(
    data_dir: Path,
    paths: Sequence[str],
    copied: Copied,
    *,
    os_user: str | None,
    vanish_ok: bool,
) -> Iterator[bytes]:
    """The archive members GNU tar makes of ``paths`` (relative to ``data_dir``), read
    as ``os_user``, without the end-of-archive blocks. ``vanish_ok``: a path that no
    longer exists is skipped (data files) rather than an error (WAL)."""
    listing = "".join(f"{p}\0" for p in paths)
    with private_file(listing, owner=os_user, suffix=".list") as names:
        args = [
            find_binary("tar"),
            "--create",
            "--file=-",
            "--format=gnu",
            "--no-recursion",
            "--numeric-owner",
            "--hard-dereference",
            f"--directory={data_dir}",
            "--null",
            "--verbatim-files-from",
            f"--files-from={names}",
        ]
        if vanish_ok:
            args.insert(2, "--ignore-failed-read")
        with ToolProcess(args, cwd=Path("/"), os_user=os_user) as tool:
            try:
                yield from _members(tool.stdout, copied)
            except _Truncated as e:
                _check_tar(tool, vanish_ok)
                raise EngineError(f"tar output ended early: {e}") from e
            _check_tar(tool, vanish_ok)


class _Truncated(Exception):
    pass


def _check_tar(tool: ToolProcess, vanish_ok: bool) -> None:
    """tar exits 1 (or 0, with --ignore-failed-read) for files that changed or vanished
    while it read them: fine for a live data directory. Anything else is a failure."""
    code = tool.wait()
    lines = [ln for ln in tool.lines if ln.strip()]
    benign = _BENIGN + _VANISHED if vanish_ok else _BENIGN
    bad = [ln for ln in lines if not any(b in ln for b in benign)]
    reason = last_error_line([ln for ln in bad if _SUMMARY not in ln] or bad or lines)
    if code not in (0, 1):
        raise ToolFailed(f"tar exited with {code}: {reason}")
    if bad:
        raise ToolFailed(f"tar could not read the data directory: {reason}")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _Truncated(f"{len(data)} of {size} bytes")
    return data


def _members(stream: BinaryIO, copied: Copied) -> Iterator[bytes]:
    """Pass tar's members on, stop at its end-of-archive (and read past its padding)."""
    long_name: str | None = None
    while True:
        header = _read_exact(stream, BLOCK)
        if header == bytes(BLOCK):
            while stream.read(CHUNK):
                pass
            return
        name, size, mtime, kind = _header(header)
        yield header
        padded = _padded(size)
        if kind == tarfile.GNUTYPE_LONGNAME:
            data = _read_exact(stream, padded)
            long_name = data[:size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            yield data
            continue
        name = (long_name or name).rstrip("/")
        long_name = None
        if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
            copied.files[name] = (size, mtime)
        elif kind != tarfile.DIRTYPE:
            raise EngineError(f"tar archived {name!r} as an unsupported member type")
        while padded > 0:
            chunk = _read_exact(stream, min(padded, CHUNK))
            padded -= len(chunk)
            yield chunk


def _header(block: bytes) -> tuple[str, int, int, bytes]:
    """Name, size, mtime and type of a GNU tar header (checksum verified)."""
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if _number(block[148:156]) != unsigned:
        raise EngineError("tar wrote a header with a bad checksum")
    name = block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return name, _number(block[124:136]), _number(block[136:148]), block[156:157]


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or base-256 when its first bit is set."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


# -- members the engine adds --------------------------------------------------------


def file_member(path: str, data: bytes, copied: Copied | None = None, mode: int = 0o600) -> bytes:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    if copied is not None:
        copied.files[path] = (info.size, int(info.mtime))
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    return header + data + bytes(_padded(len(data)) - len(data))


def dir_member(path: str, mode: int = 0o700) -> bytes:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def backup_manifest(copied: Copied, timeline: int, start_lsn: str, stop_lsn: str) -> bytes:
    """A ``backup_manifest`` (version 1, as PostgreSQL 13+ writes it) listing every
    copied file with its size, and the WAL range; no per-file checksums (the stored
    object has its own). ``pg_verifybackup`` checks a restored set against it."""
    files = [
        f'{{ "Path": {json.dumps(path, ensure_ascii=False)}, '
        f'"Size": {size}, "Last-Modified": "{_gmt(mtime)}" }}'
        for path, (size, mtime) in sorted(copied.files.items())
        if not path.startswith("pg_wal/")
    ]
    body = (
        '{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n'
        + ",\n".join(files)
        + '\n],\n"WAL-Ranges": [\n'
        + f'{{ "Timeline": {timeline}, "Start-LSN": "{start_lsn}", "End-LSN": "{stop_lsn}" }}'
        + "\n],\n"
    ).encode()
    checksum = hashlib.sha256(body).hexdigest()
    return body + f'"Manifest-Checksum": "{checksum}"}}\n'.encode()


def _gmt(mtime: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(mtime))


# -- WAL file names -------------------------------------------------------------------


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def wal_segments(timeline: int, start_lsn: str, stop_lsn: str, segment_size: int) -> list[str]:
    """Names of the WAL segments holding ``start_lsn`` up to ``stop_lsn`` (a stop point at
    a segment boundary ends in the segment before it)."""
    first = parse_lsn(start_lsn) // segment_size
    last = max(first, (parse_lsn(stop_lsn) - 1) // segment_size)
    per_id = 0x1_0000_0000 // segment_size
    return [
        f"{timeline:08X}{seg // per_id:08X}{seg % per_id:08X}" for seg in range(first, last + 1)
    ]
