"""Backup sets in a dict of bytes: the storage contract in memory, a test double shipped
with the package (like :mod:`rdsbackup.engines.memory`). Same semantics as
:class:`~rdsbackup.storage.local.LocalStorage`: an object is visible only once its writer
closed cleanly, an aborted writer leaves nothing, keys may not leave the root."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import BinaryIO

from rdsbackup.storage.base import ObjectNotFound, ObjectWriter, Storage, StorageError


class MemoryStorage(Storage):
    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._writing: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(key: str) -> str:
        """``key`` normalised; refuses keys that would leave the root, as LocalStorage."""
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise StorageError(f"invalid storage key: {key!r}")
        return rel.as_posix()

    def writing(self) -> list[str]:
        """Keys with a writer open: written to, but not visible yet."""
        with self._lock:
            return sorted(self._writing)

    @contextmanager
    def writer(self, key: str) -> Iterator[ObjectWriter]:
        key = self.key(key)
        buffer = io.BytesIO()
        with self._lock:
            self._writing[key] = self._writing.get(key, 0) + 1
        try:
            yield buffer
            with self._lock:
                self._objects[key] = buffer.getvalue()
        finally:
            with self._lock:
                self._writing[key] -= 1
                if not self._writing[key]:
                    del self._writing[key]

    def reader(self, key: str) -> BinaryIO:
        with self._lock:
            data = self._objects.get(self.key(key))
        if data is None:
            raise ObjectNotFound(key)
        return io.BytesIO(data)

    def size(self, key: str) -> int:
        with self._lock:
            data = self._objects.get(self.key(key))
        if data is None:
            raise ObjectNotFound(key)
        return len(data)

    def list(self, prefix: str) -> Iterator[str]:
        folder = self.key(prefix.rstrip("/")) + "/"
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(folder))
        yield from keys

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(self.key(key), None)

    def delete_prefix(self, prefix: str) -> int:
        folder = self.key(prefix.rstrip("/")) + "/"
        with self._lock:
            doomed = [k for k in self._objects if k.startswith(folder)]
            for k in doomed:
                del self._objects[k]
        return len(doomed)
