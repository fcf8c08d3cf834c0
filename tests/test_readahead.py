"""ReadAhead: same bytes as the inner reader, its errors raised where they occur, and a
consumer that stops early does not leave the thread behind."""

from __future__ import annotations

import io
import os
import threading

import pytest

from rdsbackup.readahead import CHUNK, DEPTH, ReadAhead


class Failing(io.RawIOBase):
    """Gives ``good`` bytes, then fails the way a checksum check at the end does."""

    def __init__(self, good: bytes) -> None:
        self.inner = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(buffer)
        if not n:
            raise ValueError("sha256 does not match the manifest")
        return n


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17])
@pytest.mark.parametrize("read_size", [-1, 7, CHUNK, 2 * CHUNK])
def test_gives_the_same_bytes(size: int, read_size: int) -> None:
    data = os.urandom(size)
    with ReadAhead(io.BytesIO(data)) as ahead:
        if read_size < 0:
            got = ahead.read()
        else:
            parts = []
            while part := ahead.read(read_size):
                parts.append(part)
            got = b"".join(parts)
    assert got == data


def test_an_error_at_the_end_reaches_the_reader_after_the_good_bytes() -> None:
    data = os.urandom(2 * CHUNK + 5)
    with ReadAhead(Failing(data)) as ahead:
        got = b""
        with pytest.raises(ValueError, match="sha256"):
            while part := ahead.read(CHUNK):
                got += part
    assert got == data


def test_closing_early_stops_the_thread() -> None:
    ahead = ReadAhead(io.BytesIO(bytes(CHUNK * (DEPTH + 10))), name="early")
    assert ahead.read(10) == bytes(10)
    ahead.close()
    assert ahead.inner.closed
    assert "early" not in [t.name for t in threading.enumerate()]
