"""The tar layout: tarfile reads it, it is what tarfile writes, and every byte range of it
is the same slice of the whole archive."""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Iterator

import pytest

from rdsbackup.storage.tarstream import BLOCK, RECORD, Member, ReadMember, TarLayout

LONG_NAME = "db/" + "%E6%97%A5" * 40 + ".dump.zst"  # > 255 characters: needs a pax header


def _bodies(sizes: dict[str, int], seed: int = 7) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {name: rng.randbytes(size) for name, size in sizes.items()}


def _archive(bodies: dict[str, bytes], mtime: int = 0) -> tuple[TarLayout, bytes]:
    layout = TarLayout([Member(n, len(b)) for n, b in bodies.items()], mtime)
    data = b"".join(layout.read(0, layout.size, _reader(bodies)))
    return layout, data


def _reader(bodies: dict[str, bytes]) -> ReadMember:
    names = list(bodies)

    def read(index: int, offset: int, length: int) -> Iterator[bytes]:
        body = bodies[names[index]]
        assert offset >= 0 and offset + length <= len(body)
        for at in range(offset, offset + length, 100):  # in pieces, like storage would
            yield body[at : min(at + 100, offset + length)]

    return read


SETS = {
    "typical": {"manifest.json": 700, "globals.sql.zst": 1234, "db/shop.dump.zst": 5000},
    "block-aligned and empty": {"manifest.json": 512, "empty": 0, "two-blocks": 1024},
    "long and non-ascii names": {"manifest.json": 10, LONG_NAME: 300, "db/café.dump": 1},
    "nothing": {},
}


@pytest.mark.parametrize("sizes", SETS.values(), ids=SETS.keys())
def test_tarfile_reads_the_archive(sizes: dict[str, int]) -> None:
    bodies = _bodies(sizes)
    layout, data = _archive(bodies, mtime=1_700_000_000)
    assert len(data) == layout.size and layout.size % RECORD == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == list(bodies)
        for m in members:
            assert m.isreg() and m.mode == 0o644 and (m.uid, m.gid) == (0, 0)
            assert m.mtime == 1_700_000_000
            extracted = tar.extractfile(m)
            assert extracted is not None and extracted.read() == bodies[m.name]


@pytest.mark.parametrize("sizes", SETS.values(), ids=SETS.keys())
def test_the_layout_is_what_tarfile_writes(sizes: dict[str, int]) -> None:
    bodies = _bodies(sizes)
    _, data = _archive(bodies, mtime=42)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, body in bodies.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), 42, 0o644
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(body))
    assert data == out.getvalue()


def test_same_members_same_bytes() -> None:
    bodies = _bodies(SETS["typical"])
    assert _archive(bodies)[1] == _archive(dict(bodies))[1]


def test_a_huge_member_gets_its_size_from_a_pax_record() -> None:
    layout = TarLayout([Member("big", 9 * 2**30)])
    head = b"".join(layout.read(0, 3 * BLOCK, lambda i, o, n: iter([b"\0" * n])))
    assert b" size=9663676416\n" in head
    assert layout.size == 9 * 2**30 + 3 * BLOCK + 2 * BLOCK + (-(9 * 2**30 + 5 * BLOCK) % RECORD)


@pytest.mark.parametrize("sizes", SETS.values(), ids=SETS.keys())
def test_every_range_is_the_slice_of_the_whole(sizes: dict[str, int]) -> None:
    bodies = _bodies(sizes)
    layout, whole = _archive(bodies)
    read = _reader(bodies)
    rng = random.Random(1)
    edges = sorted({s.start for s in layout.segments} | {layout.size})
    points = [*edges, *(e - 1 for e in edges), *(e + 1 for e in edges)]
    cases = [(a, b) for a in points for b in points if 0 <= a <= b <= layout.size]
    for _ in range(300):
        a, b = rng.randrange(layout.size + 1), rng.randrange(layout.size + 1)
        cases.append((min(a, b), max(a, b)))
    for start, stop in cases:
        assert b"".join(layout.read(start, stop, read)) == whole[start:stop], (start, stop)


def test_reads_only_the_members_a_range_touches() -> None:
    bodies = _bodies(SETS["typical"])
    layout, _ = _archive(bodies)
    touched: list[int] = []
    inner = _reader(bodies)

    def read(index: int, offset: int, length: int) -> Iterator[bytes]:
        touched.append(index)
        return inner(index, offset, length)

    body = next(s for s in layout.segments if s.member == 2)
    assert (
        b"".join(layout.read(body.start + 10, body.start + 20, read))
        == bodies["db/shop.dump.zst"][10:20]
    )
    assert touched == [2]
