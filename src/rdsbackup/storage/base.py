"""The storage contract: objects under string keys, written atomically.

Keys are ``/``-separated relative paths chosen by the service (never by a client).
A writer's bytes become visible under its key only when it is closed without error;
an aborted writer leaves nothing behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol


class StorageError(Exception):
    pass


class ObjectNotFound(StorageError):
    pass


class ObjectWriter(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class Storage(ABC):
    @abstractmethod
    def writer(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """Open ``key`` for writing; committed on clean exit, discarded on exception."""

    @abstractmethod
    def reader(self, key: str) -> BinaryIO:
        """Open ``key`` for reading. Raises ObjectNotFound."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes. Raises ObjectNotFound."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (a folder-like prefix ending in ``/``)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; nothing happens when it is missing."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many were deleted."""

    def read_bytes(self, key: str) -> bytes:
        with self.reader(key) as f:
            return f.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as w:
            w.write(data)
