"""A deterministic tar archive (POSIX pax format) laid out from member names and sizes.

The bytes of every header, padding and trailer depend only on the members' names and
sizes and on the fixed metadata (``mtime``, mode 0644, uid/gid 0, no user names), so
the archive's length and the place of each member's body are known before any member is
read. A byte range of the archive is produced by reading only the members it overlaps,
which is what lets one HTTP ``Range`` request be served without building the archive.

The layout is exactly what :mod:`tarfile` writes for the same members (``PAX_FORMAT``,
trailer padded to a full 10240-byte record); the tests hold it to that.
"""

from __future__ import annotations

import bisect
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
MODE = 0o644

ReadMember = Callable[[int, int, int], Iterator[bytes]]
"""``read(index, offset, length)``: ``length`` bytes of member ``index`` from ``offset``."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int


@dataclass(frozen=True)
class _Segment:
    start: int
    length: int
    literal: bytes
    """Header, padding or trailer bytes; empty for a member's body."""
    member: int
    """Index of the member whose body this is; -1 for literal bytes."""


class TarLayout:
    def __init__(self, members: Sequence[Member], mtime: int = 0) -> None:
        self.members = list(members)
        self.segments: list[_Segment] = []
        offset = 0
        for index, member in enumerate(self.members):
            offset = self._literal(offset, header(member, mtime))
            if member.size:
                self.segments.append(_Segment(offset, member.size, b"", index))
                offset += member.size
            offset = self._literal(offset, b"\0" * (-member.size % BLOCK))
        offset = self._literal(offset, b"\0" * (2 * BLOCK))
        self._literal(offset, b"\0" * (-offset % RECORD))
        self.size = sum(s.length for s in self.segments)
        self._starts = [s.start for s in self.segments]

    def _literal(self, offset: int, data: bytes) -> int:
        if data:
            self.segments.append(_Segment(offset, len(data), data, -1))
        return offset + len(data)

    def read(self, start: int, stop: int, read_member: ReadMember) -> Iterator[bytes]:
        """The archive's bytes ``[start, stop)``, in pieces."""
        start, stop = max(0, start), min(stop, self.size)
        first = max(0, bisect.bisect_right(self._starts, start) - 1)
        for seg in self.segments[first:]:
            if seg.start >= stop:
                return
            lo, hi = max(start, seg.start), min(stop, seg.start + seg.length)
            if lo >= hi:
                continue
            if seg.member < 0:
                yield seg.literal[lo - seg.start : hi - seg.start]
            else:
                yield from read_member(seg.member, lo - seg.start, hi - lo)


def header(member: Member, mtime: int) -> bytes:
    info = tarfile.TarInfo(member.name)
    info.size = member.size
    info.mtime = mtime
    info.mode = MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
