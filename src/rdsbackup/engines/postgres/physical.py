"""Physical backups of a whole PostgreSQL instance, and their restore.

Backup: ``pg_basebackup -D - -Ft -X fetch`` writes one tar of the data directory to
stdout; it is stored as the object ``base.tar``. The tar holds ``backup_label``, the
WAL written during the backup (``pg_wal/``, fetched at its end, so the set restores on
its own) and ``backup_manifest``: when pg_basebackup (13+) writes the tar to stdout it
injects the manifest into it. ``-X stream`` cannot write to stdout, hence ``fetch``: the
server must keep the backup's WAL until it ends (``max_wal_size``/``wal_keep_size``).
Only one tablespace fits on stdout: instances with user tablespaces are refused
(by ``check_plan``, and by pg_basebackup itself).

Restore: the tar is extracted into an empty data directory (regular files and folders
only, no absolute or ``..`` paths, ownership left to whoever starts the server), the
stored object is read to its end so its checksum is checked. Each file's CRC32C is
computed as it is written and compared with ``backup_manifest``; ``pg_verifybackup
--skip-checksums`` then checks the manifest's own checksum, that every file is there
with its size, and the WAL (sets whose manifest uses another algorithm get the full
``pg_verifybackup``). Starting ``postgres`` on the folder replays the included WAL from
``backup_label`` up to the backup's end point.

With fingerprints, the WAL goes on to a restore point made once pg_basebackup has ended:
its segments are added before the tar's end-of-archive blocks
(:meth:`~rdsbackup.engines.postgres.restore_point.Fingerprinting.base_backup_members`),
and replay ends there.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

import google_crc32c

from rdsbackup.chunks import chunk_stream
from rdsbackup.engines.base import EngineError, ObjectSink, ObjectSource, ServerAccess, ToolFailed
from rdsbackup.engines.postgres.common import pg_binary, tool_env
from rdsbackup.engines.tools import CHUNK, ToolProcess, tool_version

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

BASE_TAR = "base.tar"
MANIFEST_FILE = "backup_manifest"
_COPY_CHUNK = 256 * 1024
"""Bytes of one member copied (and CRC32C-summed) at a time while extracting."""
_START = re.compile(r"write-ahead log start point: (\S+) on timeline (\d+)")
_END = re.compile(r"write-ahead log end point: (\S+)")
_DONE = "base backup completed"
_END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE


@dataclass(frozen=True)
class BaseBackup:
    position: dict[str, str]
    """start_lsn, stop_lsn, timeline."""
    finished_at: datetime
    tool_versions: dict[str, str]


def basebackup_args(binary: str) -> list[str]:
    return [
        binary,
        "--pgdata=-",
        "--format=tar",
        "--wal-method=fetch",
        "--checkpoint=fast",
        "--verbose",
        "--no-password",
    ]


def base_backup(
    access: ServerAccess,
    sink: ObjectSink,
    end: Callable[[dict[str, str]], Iterator[bytes]] | None = None,
) -> BaseBackup:
    """Stream the instance into ``sink`` as ``base.tar``; raise ToolFailed unless
    pg_basebackup exited 0 and reported its WAL start and end points. ``end``: tar
    members to add after pg_basebackup's, given its WAL positions once it has exited."""
    binary = pg_binary("pg_basebackup")
    with ToolProcess(basebackup_args(binary), env=tool_env(access)) as tool:
        if end is None:
            sink.put(BASE_TAR, tool.stdout)
        else:

            def more() -> Iterator[bytes]:
                tool.check(success_marker=_DONE)
                return end(wal_positions(list(tool.lines)))

            chunks = _before_the_end(tool.stdout, more)
            with closing(chunk_stream(chunks, CHUNK)) as stream:
                sink.put(BASE_TAR, stream)
        tool.check(success_marker=_DONE)
    finished = datetime.now(UTC)
    return BaseBackup(
        wal_positions(list(tool.lines)), finished, {"pg_basebackup": tool_version(binary)}
    )


def _before_the_end(tar: BinaryIO, more: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
    """The archive ``tar`` with ``more()``'s members put before its end-of-archive
    (``more`` is called at the archive's end: a tool that failed says so first)."""
    held = b""
    while chunk := tar.read(CHUNK):
        data = held + chunk
        held = data[-_END_OF_ARCHIVE:]
        yield data[:-_END_OF_ARCHIVE]
    members = more()
    if held != bytes(_END_OF_ARCHIVE):
        raise EngineError(f"pg_basebackup's {BASE_TAR} does not end with two zero blocks")
    yield from members
    yield held


def wal_positions(lines: list[str]) -> dict[str, str]:
    """``start_lsn``/``timeline``/``stop_lsn`` from pg_basebackup's ``--verbose`` output."""
    text = "\n".join(lines)
    start, end = _START.search(text), _END.search(text)
    if start is None or end is None:
        raise ToolFailed("pg_basebackup did not report its write-ahead log start and end points")
    return {"start_lsn": start[1], "stop_lsn": end[1], "timeline": start[2]}


def restore_base(source: ObjectSource, data_dir: Path) -> None:
    """Materialise ``base.tar`` into the empty ``data_dir`` and verify it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise EngineError(f"restore target {data_dir} is not empty")
    stream = source.open(BASE_TAR)
    try:
        crcs = _extract(stream, data_dir)
    finally:
        stream.close()
    manifest = data_dir / MANIFEST_FILE
    if manifest.is_file():
        checked = check_file_crcs(manifest.read_text(encoding="utf-8"), crcs)
        _verify(data_dir, skip_checksums=checked)
        manifest.unlink()


class _ChecksummingTar(tarfile.TarFile):
    """Extracts as TarFile does, computing the CRC32C of each regular file (the default
    checksum of pg_basebackup's manifest) while writing it: the bytes pass through here
    anyway, so pg_verifybackup need not read them all again. ``makefile`` is TarFile's
    step that writes one regular file; which members are extracted where, and the
    filter, stay TarFile's."""

    crcs: dict[str, str]

    def makefile(self, tarinfo: tarfile.TarInfo, targetpath: StrOrBytesPath) -> None:
        if tarinfo.sparse is not None:
            raise EngineError(f"{BASE_TAR} holds a sparse file: {tarinfo.name!r}")
        source = self.fileobj
        assert source is not None
        source.seek(tarinfo.offset_data)
        crc, remaining = 0, tarinfo.size
        with open(targetpath, "wb") as target:
            while remaining:
                chunk = source.read(min(_COPY_CHUNK, remaining))
                if not chunk:
                    raise tarfile.ReadError(f"{tarinfo.name}: unexpected end of data")
                target.write(chunk)
                crc = google_crc32c.extend(crc, chunk)
                remaining -= len(chunk)
        self.crcs[tarinfo.name.removeprefix("./")] = crc.to_bytes(4, "little").hex()


def _extract(stream: BinaryIO, data_dir: Path) -> dict[str, str]:
    """Extract the tar stream, then read the object to its end (the checksum is checked
    there). A damaged stream is reported as the checksum error when it is one. Returns
    each regular file's CRC32C, as the manifest spells it."""
    try:
        with _ChecksummingTar.open(fileobj=stream, mode="r|") as tar:
            tar.crcs = {}
            tar.extractall(data_dir, filter=_member_filter)  # noqa: S202 (filtered)
            crcs = tar.crcs
    except (tarfile.TarError, OSError, EOFError) as e:
        _read_to_end(stream)
        raise EngineError(f"{BASE_TAR} could not be extracted: {e}") from e
    except EngineError:
        _read_to_end(stream)
        raise
    _read_to_end(stream)
    return crcs


def check_file_crcs(manifest_text: str, crcs: dict[str, str]) -> bool:
    """Compare the files' CRC32Cs with ``backup_manifest``. False (nothing checked) when
    the manifest uses another algorithm or names a file by an encoded path: then
    pg_verifybackup checks the checksums itself. Raises EngineError on a mismatch."""
    try:
        files = json.loads(manifest_text)["Files"]
    except (ValueError, KeyError, TypeError) as e:
        raise EngineError(f"{MANIFEST_FILE} cannot be read: {e}") from e
    if any(f.get("Checksum-Algorithm") != "CRC32C" or "Path" not in f for f in files):
        return False
    for f in files:
        found = crcs.get(f["Path"])
        if found is None:
            raise EngineError(f"{f['Path']} is in {MANIFEST_FILE} but not in {BASE_TAR}")
        if found != str(f.get("Checksum", "")).lower():
            raise EngineError(
                f"{f['Path']}: CRC32C {found} does not match {MANIFEST_FILE} ({f.get('Checksum')})"
            )
    return True


def _read_to_end(stream: BinaryIO) -> None:
    while stream.read(CHUNK):
        pass


def _member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Regular files and folders under ``dest`` only; modes kept, owners not applied."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise EngineError(f"{BASE_TAR} holds an unsafe path: {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise EngineError(f"{BASE_TAR} holds an unsupported member type: {member.name!r}")
    safe = tarfile.tar_filter(member, dest)
    return safe.replace(uid=None, gid=None, uname=None, gname=None, deep=False)  # type: ignore[arg-type]


def _verify(data_dir: Path, *, skip_checksums: bool) -> None:
    """pg_verifybackup: the manifest's own checksum, every file present with its size,
    the WAL up to the backup's end parseable, and (unless already checked while
    extracting) every file's checksum."""
    args = [pg_binary("pg_verifybackup"), "--quiet"]
    if skip_checksums:
        args.append("--skip-checksums")
    args.append(str(data_dir))
    with ToolProcess(args, stdout=subprocess.DEVNULL) as tool:
        tool.check()
