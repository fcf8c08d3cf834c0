"""A readable binary stream over an iterator of byte chunks (a generator that builds a
tar as it goes, a download's body): what ``tarfile`` and the storage sinks read."""

from __future__ import annotations

import io
from collections.abc import Iterator


class ChunkReader(io.RawIOBase):
    """Closing it closes the iterator (a generator's ``finally`` runs then)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def chunk_stream(chunks: Iterator[bytes], buffer_size: int) -> io.BufferedReader:
    return io.BufferedReader(ChunkReader(chunks), buffer_size)
