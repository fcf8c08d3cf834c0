"""A copy of a live directory that equals its content at one instant, as a tar stream.

:class:`DirectoryImage` copies the regular files under a root into one tar stream,
round after round: the first round copies every file, each later round only the files
that are new or were written since their last copy started. A file counts as written
when its inode, size or ``ctime`` changed; the kernel sets ``ctime`` on every write,
truncate or rename (``utime`` cannot set it), so "``ctime`` older than the start of my
last copy" proves "no byte of this file changed since before I began reading it".

A file copied again is read whole, but only its 64 KiB blocks whose digest (SHA-256,
fast with the CPU's SHA instructions) differs from the block stored before go into the
stream, as *range* members (``.rdsbackup-range/<offset>/<name>``: bytes to write at
that offset); its final size is in :meth:`DirectoryImage.files`. Re-reading is cheap,
storing is not: under write load a database file changes in a few pages between rounds.

:meth:`DirectoryImage.settled` is the proof for the whole directory: two listings, one
after the other, in which no file is new, missing or written since its copy started.
Then every copied file still held, at the instant between the two listings, exactly the
bytes that were stored: the stream (applied in order) cut to the sizes of
:meth:`files` is the directory at that instant. Files written through a memory map may
not move ``ctime``; a caller that knows of such files can mark them stale
(:meth:`DirectoryImage.pending` ``force``).

Where the directory's file system makes copy-on-write clones, a round can instead clone
the files into a :class:`~rdsbackup.engines.reflink.CloneStage` (:meth:`DirectoryImage.clone`):
the same proof holds for the clones, which :meth:`DirectoryImage.staged` reads whole
once the image has settled.

The tar stream holds regular files only (PAX headers, names relative to the root);
directories are in :meth:`DirectoryImage.dirs`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rdsbackup.engines.reflink import CloneStage
from rdsbackup.engines.tools import CHUNK

BLOCK = tarfile.BLOCKSIZE
CTIME_MARGIN_NS = 100_000_000
"""File times come from the kernel's coarse clock, which lags the real time by up to a
tick (1-10 ms): a write that began just after a copy started may carry a ``ctime`` a
little before it. Anything written within this margin of the copy's start is stale."""
COARSE_MARGIN_NS = 2_100_000_000
"""The margin on a file system that keeps whole seconds only (no file has a fraction)."""
DIGEST_BLOCK = 64 * 1024
RANGE_DIR = ".rdsbackup-range"
RUN_LIMIT = 16
"""Changed blocks in a row that make one range member at most."""


@dataclass(frozen=True)
class Seen:
    """What a listing saw of one file."""

    ino: int
    size: int
    ctime_ns: int


@dataclass(frozen=True)
class Copied:
    ino: int
    size: int
    started_ns: int
    digests: list[bytes]
    """Of each DIGEST_BLOCK of the bytes stored."""


@dataclass
class Listing:
    files: dict[str, Seen]
    dirs: list[str]


class DirectoryImage:
    """Copies the files under ``root`` (those ``keep(relative_name)`` accepts)."""

    def __init__(self, root: Path, keep: Callable[[str], bool]) -> None:
        self.root = root
        self.keep = keep
        self.copied: dict[str, Copied] = {}
        self.bytes_copied = 0
        self.final: Listing | None = None
        self.margin_ns = 0

    # -- listing ----------------------------------------------------------------------

    def listing(self) -> Listing:
        found = Listing({}, [])
        self._scan(self.root, "", found)
        if self.margin_ns == 0:
            fine = any(s.ctime_ns % 1_000_000_000 for s in found.files.values())
            self.margin_ns = CTIME_MARGIN_NS if fine else COARSE_MARGIN_NS
        return found

    def _scan(self, path: Path, prefix: str, found: Listing) -> None:
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return  # removed while we listed: the next listing shows it gone
        for entry in entries:
            name = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if self.keep(name + "/"):
                    found.dirs.append(name)
                    self._scan(Path(entry.path), name + "/", found)
            elif stat.S_ISREG(st.st_mode) and self.keep(name):
                found.files[name] = Seen(st.st_ino, st.st_size, st.st_ctime_ns)

    # -- rounds -----------------------------------------------------------------------

    def pending(self, listing: Listing, force: Callable[[str], bool] | None = None) -> list[str]:
        """Files of ``listing`` that are new or were written since their copy started."""
        return sorted(
            name
            for name, seen in listing.files.items()
            if not self._unchanged(name, seen) or (force is not None and force(name))
        )

    def _unchanged(self, name: str, seen: Seen) -> bool:
        copy = self.copied.get(name)
        return (
            copy is not None
            and copy.ino == seen.ino
            and copy.size == seen.size
            and seen.ctime_ns < copy.started_ns - self.margin_ns
        )

    def wait_until_old(self, names: Iterable[str], listing: Listing) -> None:
        """Sleep until the newest ``ctime`` among ``names`` is a margin old: a copy
        started sooner would be stale by that margin alone."""
        newest = max((listing.files[n].ctime_ns for n in names if n in listing.files), default=0)
        wait = newest + self.margin_ns - time.time_ns()
        if wait > 0:
            time.sleep(min(wait, self.margin_ns) / 1e9)

    def copy(self, names: Iterable[str]) -> Iterator[bytes]:
        """Tar members for ``names`` (files gone meanwhile are skipped)."""
        for name in names:
            yield from self._copy_one(name)

    def _copy_one(self, name: str) -> Iterator[bytes]:
        started = time.time_ns()
        try:
            f = open(self.root / name, "rb")  # noqa: SIM115 - closed below, across yields
        except FileNotFoundError:
            self.copied.pop(name, None)
            return
        with f:
            st = os.fstat(f.fileno())
            before = self.copied.get(name)
            if before is None or before.ino != st.st_ino:
                digests = yield from self._whole(f, name, st)
            else:
                digests = yield from self._changes(f, name, st.st_size, before.digests)
        self.copied[name] = Copied(st.st_ino, st.st_size, started, digests)

    def _whole(
        self, f: BinaryIO, name: str, st: os.stat_result
    ) -> Generator[bytes, None, list[bytes]]:
        yield _header(name, st.st_size, stat.S_IMODE(st.st_mode), int(st.st_mtime))
        digests: list[bytes] = []
        for block in _blocks(f, st.st_size):
            digests.append(_digest(block))
            self.bytes_copied += len(block)
            yield block
        yield _padding(st.st_size)
        return digests

    def _changes(
        self, f: BinaryIO, name: str, size: int, before: list[bytes]
    ) -> Generator[bytes, None, list[bytes]]:
        """Range members for the blocks that differ from ``before``."""
        digests: list[bytes] = []
        run: list[bytes] = []
        for n, block in enumerate(_blocks(f, size)):
            digest = _digest(block)
            digests.append(digest)
            if n < len(before) and before[n] == digest:
                yield from self._range(name, n - len(run), run)
                continue
            run.append(block)
            if len(run) == RUN_LIMIT:
                yield from self._range(name, n + 1 - len(run), run)
        yield from self._range(name, len(digests) - len(run), run)
        return digests

    def _range(self, name: str, first: int, run: list[bytes]) -> Iterator[bytes]:
        if not run:
            return
        data = b"".join(run)
        run.clear()
        yield _header(f"{RANGE_DIR}/{first * DIGEST_BLOCK}/{name}", len(data), 0o600, 0)
        self.bytes_copied += len(data)
        yield data
        yield _padding(len(data))

    def clone(self, names: Iterable[str], stage: CloneStage) -> None:
        """A round of copies made as clones in ``stage``: nothing goes into the stream
        until :meth:`staged` reads the clones of the settled image."""
        for name in names:
            started = time.time_ns()
            try:
                st, size = stage.clone(self.root / name, name)
            except FileNotFoundError:
                self.copied.pop(name, None)
                stage.discard(name)
                continue
            self.copied[name] = Copied(st.st_ino, size, started, [])

    def staged(self, stage: CloneStage) -> Iterator[bytes]:
        """Tar members of the settled image's files, whole, read from their clones."""
        for name, size in self.files().items():
            with open(stage.path(name), "rb") as f:
                st = os.fstat(f.fileno())
                yield _header(name, size, stat.S_IMODE(st.st_mode), int(st.st_mtime))
                for block in _blocks(f, size):
                    self.bytes_copied += len(block)
                    yield block
                yield _padding(size)

    def settled(self, force: Callable[[str], bool] | None = None) -> bool:
        """True (and :attr:`final` set) when two listings in a row find nothing pending
        and agree on every file: the copies are the directory at one instant."""
        first = self.listing()
        if self.pending(first, force):
            return False
        second = self.listing()
        if second.files != first.files or self.pending(second, force):
            return False
        self.final = second
        return True

    def files(self) -> dict[str, int]:
        """Name -> size of every file of the settled image."""
        assert self.final is not None, "settled() has not succeeded"
        return {name: seen.size for name, seen in sorted(self.final.files.items())}

    def dirs(self) -> list[str]:
        assert self.final is not None, "settled() has not succeeded"
        return sorted(self.final.dirs)

    @staticmethod
    def end() -> bytes:
        return bytes(2 * BLOCK)


def _header(name: str, size: int, mode: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, mtime
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _blocks(f: BinaryIO, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``f`` in DIGEST_BLOCKs; zeros where it shrank while being read
    (its ``ctime`` moved then: it is copied again)."""
    left = size
    while left > 0:
        block = f.read(min(DIGEST_BLOCK, left))
        if len(block) < min(DIGEST_BLOCK, left):
            block += bytes(min(DIGEST_BLOCK, left) - len(block))
        left -= len(block)
        yield block


def _digest(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


class IterStream:
    """A binary stream reading the bytes an iterator yields (for ``ObjectSink.put``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def read1(self, size: int = -1) -> bytes:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._left = chunk
        n = len(self._left) if size < 0 else min(size, len(self._left))
        out, self._left = self._left[:n], self._left[n:]
        return out

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted != 0:
            data = self.read1(CHUNK if wanted < 0 else wanted)
            if not data:
                break
            parts.append(data)
            if wanted > 0:
                wanted -= len(data)
        return b"".join(parts)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
