"""Snapshot MariaDB sets: the server's data directory as it was at one instant inside
a ``BACKUP STAGE BLOCK_COMMIT`` window, as a tar stream; restored by extracting it and
letting the server's own crash recovery (InnoDB redo, Aria log) run at its first start.

Why this is consistent. A plain copy of a live data directory is not: InnoDB keeps
writing pages (flushes, purge, transactions that run but cannot commit) while the copy
runs, so different files, or parts of one file, come from different moments. What
crash recovery does handle is the directory as it was at a single instant (what a
power cut leaves behind). So:

1. without any lock, every file is copied; then, up to ``UNLOCKED_ROUNDS`` times and
   while a round still stores more than ``UNLOCKED_ENOUGH``, the blocks written
   meanwhile (most of the bytes, most of the time, are stored before any lock);
2. ``BACKUP STAGE START, FLUSH, BLOCK_DDL, BLOCK_COMMIT``: no commit, DDL or
   non-transactional write can happen any more; ``FLUSH ENGINE LOGS`` makes the redo
   of every committed transaction durable; the binlog position and GTID are read; up
   to ``QUIESCE_LIMIT`` seconds pass until InnoDB's LSN stands still for ``QUIET``
   (the statements the lock caught in flight, purge);
3. rounds: every file written since its copy started (by ``ctime``) is read again and
   its changed blocks stored, until two listings in a row find no file new, gone, or
   written since its copy started, and InnoDB's LSN did not move since the redo log's
   last copy began (a redo log written through a memory map may not move ``ctime``; if
   the LSN moved, the redo log is read again).
   :class:`~rdsbackup.engines.mariadb.image.DirectoryImage` proves that the stored
   bytes are then exactly the directory at one instant;
4. ``BACKUP STAGE END``.

Where the data directory's file system makes copy-on-write clones (XFS, Btrfs: see
:mod:`rdsbackup.engines.reflink`), the rounds clone the files into a stage beside the
data directory instead of reading them: step 1 is one round of clones, step 3 clones
again every file written since its clone began, and the clones of the settled image
are read into the tar stream after step 4, with no lock held. The proof is the same
(a clone is the file at one instant); the lock no longer waits for files to be read.

That instant lies inside BLOCK_COMMIT, so the image holds exactly the transactions
committed before the recorded position; transactions still open are rolled back by
crash recovery on restore. With ``fingerprint``, a session opens its consistent
snapshot as soon as commits are blocked, so it sees those same transactions, and
fingerprints the tables once the image is stored.

The lock window (``extra``: ``copy`` ``reflink`` or ``stream``, ``lock_ms`` commits
blocked, ``ddl_lock_ms`` DDL and non-transactional writes blocked, ``locked_rounds``,
``locked_bytes`` stored or cloned under the lock) is the time to copy again the files
InnoDB wrote since the last unlocked round, as long as its page cleaner keeps flushing
pages into them, plus two listings. Measured with ``bench/mariadb_snapshot_window.py``
(2 CPUs, a 520-690 MB data directory): streamed, 0.15 to 0.35 s under the tests' light
writes, 0.7 to 1.8 s under ``sysbench oltp_write_only``; cloned on XFS under the same
load, 0.10 s (one round, whose clones take milliseconds; the rest is the wait for
InnoDB to settle and for written files' ``ctime`` to age past the clock's margin).
A directory that does not settle within ``LOCK_LIMIT`` seconds (a transaction that
keeps writing without committing) fails the backup and releases the lock.

Not copied: binary and relay logs and their indexes (as mariadb-backup: the restored
server starts a new binary log; committed transactions never depend on them here,
since their redo was flushed under the lock), ``ibtmp1`` (recreated at start), pid
files, sockets and anything not a regular file or directory. Tables whose files live
outside the data directory (``DATA DIRECTORY``, ``.isl`` files) are refused.

Objects: ``datadir.tar`` (every copy round, in order: whole files, then ranges of
blocks to write into them) and ``datadir.json`` (the files and directories of the
final image, the files' final sizes, and the figures of the copy).
"""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import shutil
import tarfile
import time
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from rdsbackup.engines.base import EngineError, ObjectSink, ObjectSource, ServerAccess
from rdsbackup.engines.mariadb.image import RANGE_DIR, DirectoryImage, IterStream
from rdsbackup.engines.mariadb.physical import owner_of, require_empty
from rdsbackup.engines.mariadb.sql import SnapshotSession, StageLock
from rdsbackup.engines.reflink import CloneStage
from rdsbackup.engines.tools import CHUNK

TAR_OBJECT = "datadir.tar"
LIST_OBJECT = "datadir.json"
LOCK_LIMIT = 120.0
"""Seconds under BLOCK_COMMIT after which a directory that keeps changing fails the backup."""
UNLOCKED_ROUNDS = 3
UNLOCKED_ENOUGH = 8 << 20
"""Unlocked rounds stop once one stores less than this."""
QUIET = 0.05
"""Seconds without a new InnoDB LSN after which the locked copy rounds begin ..."""
QUIESCE_LIMIT = 2.0
"""... or after this many seconds at most."""
_BINLOG = re.compile(r".+\.\d{6}$")
_SKIPPED_TOP = ("ibtmp",)
_SKIPPED_SUFFIX = (".index", ".pid", ".sock")
_REDO = "ib_logfile"


def keep(name: str) -> bool:
    """Whether ``name`` (relative, ``/`` after directories) belongs in the image."""
    if "/" in name.rstrip("/"):
        return True  # inside a database directory
    return not (
        _BINLOG.match(name) or name.startswith(_SKIPPED_TOP) or name.endswith(_SKIPPED_SUFFIX)
    )


@dataclass
class SnapshotOutcome:
    position: dict[str, str]
    consistent_time: datetime
    extra: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, list[object]] | None = None


def expected_bytes(data_dir: Path) -> int:
    """The files the image copies (the blocks copied again are few, as a rule)."""
    files = DirectoryImage(data_dir, keep).listing().files
    return sum(s.size for s in files.values()) + 1024 * (len(files) + 2)


def backup_snapshot(
    access: ServerAccess,
    sink: ObjectSink,
    *,
    lock_limit: float = LOCK_LIMIT,
    fingerprint: bool = False,
    reflink: bool = True,
) -> SnapshotOutcome:
    """``reflink``: clone the files where the file system can (else stream them)."""
    if access.data_dir is None:
        raise EngineError("a snapshot needs the server's data directory")
    image = DirectoryImage(access.data_dir, keep)
    _refuse_external_tables(image)
    with ExitStack() as stack:
        stage = CloneStage.beside(access.data_dir) if reflink else None
        if stage is not None:
            stack.enter_context(stage)
        lock = stack.enter_context(StageLock(access))
        snapshot = stack.enter_context(SnapshotSession(access)) if fingerprint else None
        rounds = _Rounds(image, lock, lock_limit, snapshot, stage)
        stream = IterStream(rounds.run())
        try:
            sink.put(TAR_OBJECT, cast(BinaryIO, stream))
        finally:
            stream.close()
        listing = {"files": image.files(), "dirs": image.dirs(), "figures": rounds.figures}
        sink.put(LIST_OBJECT, _json_stream(listing))
        fingerprints = snapshot.fingerprints(snapshot.base_tables(None)) if snapshot else None
    assert lock.blocked_at is not None
    return SnapshotOutcome(rounds.position, lock.blocked_at, rounds.figures, fingerprints)


def _refuse_external_tables(image: DirectoryImage) -> None:
    external = sorted(n for n in image.listing().files if n.endswith(".isl"))
    if external:
        raise EngineError(
            f"table file {external[0].removesuffix('.isl')} lives outside the data directory"
            " (DATA DIRECTORY); a snapshot cannot copy it: use Physical"
        )


class _Rounds:
    """The copy rounds of one snapshot, as the bytes of the tar stream."""

    def __init__(
        self,
        image: DirectoryImage,
        lock: StageLock,
        limit: float,
        snapshot: SnapshotSession | None = None,
        stage: CloneStage | None = None,
    ) -> None:
        self.image, self.lock, self.limit, self.snapshot = image, lock, limit, snapshot
        self.stage = stage
        self.position: dict[str, str] = {}
        self.figures: dict[str, str] = {}

    def run(self) -> Iterator[bytes]:
        if self.stage is None:
            yield from self.image.copy(sorted(self.image.listing().files))
            for _ in range(UNLOCKED_ROUNDS):  # what changed meanwhile: what is left shrinks
                before = self.image.bytes_copied
                yield from self.image.copy(self.image.pending(self.image.listing()))
                if self.image.bytes_copied - before < UNLOCKED_ENOUGH:
                    break
        else:  # clones are cheap: the locked rounds clone again whatever changed
            self.image.clone(sorted(self.image.listing().files), self.stage)
        unlocked_bytes = self._stored()
        self.lock.block_commit()
        if self.snapshot is not None:
            self.snapshot.open()
        self.lock.run("FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS")
        self.position = self.lock.position()
        self._quiesce()
        locked_rounds = yield from self._locked_rounds()
        self.lock.end()
        self.figures = {
            "copy": "stream" if self.stage is None else "reflink",
            "lock_ms": str(round(self.lock.commit_seconds * 1000)),
            "ddl_lock_ms": str(round(self.lock.ddl_seconds * 1000)),
            "locked_rounds": str(locked_rounds),
            "locked_bytes": str(self._stored() - unlocked_bytes),
        }
        if self.stage is not None:
            self.figures["cloned_bytes"] = str(self.stage.bytes_cloned)
            yield from self.image.staged(self.stage)
        self.figures["copied_bytes"] = str(self.image.bytes_copied)
        yield self.image.end()

    def _stored(self) -> int:
        """Bytes copied into the stream, or cloned, so far."""
        return self.image.bytes_copied if self.stage is None else self.stage.bytes_cloned

    def _copy(self, names: list[str]) -> Iterator[bytes]:
        if self.stage is None:
            yield from self.image.copy(names)
        else:
            self.image.clone(names, self.stage)

    def _locked_rounds(self) -> Generator[bytes, None, int]:
        """Copy what changed until the image settles; returns the number of rounds.

        The redo log is copied again whenever InnoDB's LSN moved after its last copy
        began (first of all: it was copied before the lock)."""
        deadline = time.monotonic() + self.limit
        rounds, redo_lsn, redo_stale = 0, -1, True
        while True:
            if not redo_stale and self.image.settled() and self._lsn() == redo_lsn:
                return rounds
            if time.monotonic() > deadline:
                raise EngineError(
                    "the data directory kept changing under BACKUP STAGE BLOCK_COMMIT for"
                    f" {self.limit:.0f} s ({', '.join(self._pending(redo_stale)[:5])}): a"
                    " transaction that cannot commit is still writing; no image was taken"
                )
            listing = self.image.listing()
            names = self.image.pending(listing, _redo if redo_stale else None)
            self.image.wait_until_old(names, listing)
            lsn = self._lsn()
            if any(_redo(n) for n in names):
                redo_lsn = lsn
            yield from self._copy(names)
            rounds += 1
            redo_stale = self._lsn() != redo_lsn

    def _quiesce(self) -> None:
        """Wait (a little) for InnoDB to finish what the lock caught in flight: the
        statements that now wait to commit, purge. A redo log copied while the LSN
        still moves is copied again."""
        deadline = time.monotonic() + QUIESCE_LIMIT
        lsn, still_since = self._lsn(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - still_since < QUIET:
            time.sleep(QUIET / 5)
            now = self._lsn()
            if now != lsn:
                lsn, still_since = now, time.monotonic()

    def _pending(self, redo_stale: bool) -> list[str]:
        return self.image.pending(self.image.listing(), _redo if redo_stale else None)

    def _lsn(self) -> int:
        return self.lock.status("Innodb_lsn_current")


def _redo(name: str) -> bool:
    return name.startswith(_REDO)


def _json_stream(value: Any) -> BinaryIO:
    return io.BytesIO(json.dumps(value, indent=1, sort_keys=True).encode())


# -- restore -------------------------------------------------------------------------


def restore_snapshot(source: ObjectSource, data_dir: Path) -> None:
    """Extract the image into the empty ``data_dir``; the server recovers it at start."""
    require_empty(data_dir)
    with source.open(LIST_OBJECT) as f:
        listing = json.loads(f.read())
    files: dict[str, int] = listing["files"]
    root = data_dir.resolve()
    with source.open(TAR_OBJECT) as reader:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                _extract(tar, member, root)
        while reader.read(CHUNK):
            pass  # to the end, where the checksum is checked
    _settle(root, files, listing["dirs"])
    _hand_over(root, owner_of(data_dir))


def _target(root: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise EngineError(f"{TAR_OBJECT} holds an unsafe name {name!r}")
    return root.joinpath(*parts)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    """A whole file, or a range of bytes to write into one already extracted."""
    if not member.isreg():
        raise EngineError(f"{TAR_OBJECT} holds {member.name!r}, which is not a regular file")
    content = tar.extractfile(member)
    assert content is not None
    top, _, rest = member.name.partition("/")
    if top == RANGE_DIR:
        offset, _, name = rest.partition("/")
        path = _target(root, name)
        if not offset.isdigit() or not path.is_file():
            raise EngineError(f"{TAR_OBJECT} holds a range of no file: {member.name!r}")
        with content, open(path, "r+b") as out:
            out.seek(int(offset))
            shutil.copyfileobj(content, out, CHUNK)
        return
    path = _target(root, member.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with content, open(path, "wb") as out:
        shutil.copyfileobj(content, out, CHUNK)
    path.chmod(member.mode & 0o777)


def _settle(root: Path, files: dict[str, int], dirs: list[str]) -> None:
    """Keep exactly the final image's files, at their final sizes."""
    for d in dirs:
        _target(root, d).mkdir(parents=True, exist_ok=True)
    for path in [p for p in root.rglob("*") if p.is_file()]:
        if path.relative_to(root).as_posix() not in files:
            path.unlink()
    for name, size in files.items():
        path = _target(root, name)
        if not path.is_file() or path.stat().st_size < size:
            raise EngineError(f"the snapshot set is incomplete: {name} is missing or truncated")
        os.truncate(path, size)


def _hand_over(root: Path, owner: str | None) -> None:
    if owner is None:
        return
    pw = pwd.getpwnam(owner)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)
