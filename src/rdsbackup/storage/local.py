"""Backup sets in a local folder: one file per object, renamed into place when complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from rdsbackup.storage.base import ObjectNotFound, ObjectWriter, Storage, StorageError

_PARTIAL = ".partial"


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file behind ``key``; refuses keys that would leave the root."""
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise StorageError(f"invalid storage key: {key!r}")
        return self.root.joinpath(*rel.parts)

    @contextmanager
    def writer(self, key: str) -> Iterator[ObjectWriter]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + _PARTIAL)
        try:
            with open(partial, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)

    def reader(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError as e:
            raise ObjectNotFound(key) from e

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError as e:
            raise ObjectNotFound(key) from e

    def list(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix.rstrip("/"))
        if not base.is_dir():
            return
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.name.endswith(_PARTIAL):
                yield p.relative_to(self.root).as_posix()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = self.path(prefix.rstrip("/"))
        if not base.exists():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return count


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
