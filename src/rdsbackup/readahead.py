"""A reader whose reads are done ahead by a thread.

Restores chain CPU-bound stages on one stream: read and sha256 the stored bytes,
decompress them, write them into a tool's pipe. hashlib, zstandard and pipe writes all
release the GIL, so putting a :class:`ReadAhead` between two stages lets them run on
two cores at once instead of one after the other.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import BinaryIO

CHUNK = 1 << 20
DEPTH = 8
"""Chunks held ahead of the consumer (memory: DEPTH x CHUNK)."""


class ReadAhead(io.RawIOBase):
    """Reads ``inner`` in ``CHUNK`` pieces on its own thread. An error the thread meets
    (a checksum mismatch at the end of the stream, say) is raised by the read that
    reaches it. Closing stops the thread and closes ``inner``."""

    def __init__(self, inner: BinaryIO | io.RawIOBase, name: str = "read-ahead") -> None:
        self.inner = inner
        self._ahead: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._pending = memoryview(b"")
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while chunk := self.inner.read(CHUNK):
                if not self._offer(bytes(chunk)):
                    return
            self._offer(b"")
        except BaseException as e:
            self._offer(e)

    def _offer(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        """The next chunk the thread read; b"" at the end; its error, raised."""
        if self._ended:
            return b""
        item = self._ahead.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        self._ended = not item
        return item

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = memoryview(self._next())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        """A whole chunk as the thread read it (no copy) when ``size`` allows one."""
        if size >= CHUNK and not self._pending:
            return self._next()
        return super().read(size) or b""

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            self.inner.close()
        super().close()
