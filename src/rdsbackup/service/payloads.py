"""What a download link serves: a set as one tar archive, or one of its objects, read
from storage in chunks.

Which objects exist is decided by the set's catalog records only; a name from a link is
compared with them and never used to build a storage key itself. The bytes are served
as stored: clients verify them against the manifest (whose sha256 is the set's
``Checksum``), so a corrupt object is detected where it is used. The objects of an
encrypted set are served encrypted (docs/encryption.md): a link is a bearer token, and
whoever holds one gets no more than what storage holds; ``rdsbackup backup download``
decrypts with the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service.links import set_tag
from rdsbackup.states import BackupStatus
from rdsbackup.storage.base import ObjectNotFound, Storage, StorageError
from rdsbackup.storage.tarstream import Member, TarLayout
from rdsbackup.timeutil import epoch_seconds

log = logging.getLogger(__name__)

CHUNK = 1 << 20
CACHE_ENTRIES = 1024


class PayloadNotFound(Exception):
    pass


class SetNotServable(Exception):
    """The set exists but is not (or no longer) a successful, available set."""


Chunks = Callable[[int, int], Iterator[bytes]]


@dataclass(frozen=True)
class Payload:
    filename: str
    content_type: str
    size: int
    chunks: Chunks
    """``chunks(start, stop)``: the bytes ``[start, stop)``, read when iterated."""


def read_object(storage: Storage, key: str, offset: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``key`` from ``offset``; fails rather than come up short."""
    with storage.reader(key) as f:
        if offset:
            f.seek(offset)
        while length > 0:
            chunk = f.read(min(CHUNK, length))
            if not chunk:
                raise StorageError(f"{key} ended {length} bytes early")
            length -= len(chunk)
            yield chunk


@dataclass(frozen=True)
class _Set:
    instance_id: str
    prefix: str
    checksum: str
    mtime: int
    objects: list[str]
    encrypted: bool = False


class Payloads:
    def __init__(self, catalog: Catalog, storage: Storage) -> None:
        self.catalog = catalog
        self.storage = storage
        self._db_objects: OrderedDict[tuple[int, str], dict[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def payload(self, backup_id: int, tag: str, object_name: str | None) -> Payload:
        found = self._set(backup_id, tag)
        try:
            if object_name is None:
                return self._archive(backup_id, found)
            if object_name not in (MANIFEST_NAME, *found.objects):
                raise PayloadNotFound(object_name)
            return self._object(found.prefix + object_name, found.encrypted)
        except ObjectNotFound as e:
            log.warning("backup set %s: %s is missing from storage", backup_id, e)
            raise PayloadNotFound(str(e)) from e

    def _archive(self, backup_id: int, found: _Set) -> Payload:
        storage = self.storage
        names = [MANIFEST_NAME, *found.objects]
        keys = [found.prefix + n for n in names]
        sizes = [storage.size(k) for k in keys]
        layout = TarLayout([Member(n, z) for n, z in zip(names, sizes, strict=True)], found.mtime)

        def read_member(index: int, offset: int, length: int) -> Iterator[bytes]:
            return read_object(storage, keys[index], offset, length)

        return Payload(
            f"{found.instance_id}_backup_{backup_id}.tar",
            "application/x-tar",
            layout.size,
            lambda start, stop: layout.read(start, stop, read_member),
        )

    def _object(self, key: str, encrypted: bool) -> Payload:
        storage = self.storage
        name = PurePosixPath(key).name
        return Payload(
            name,
            _content_type(key) if not encrypted or name == MANIFEST_NAME else _ENCRYPTED,
            storage.size(key),
            lambda start, stop: read_object(storage, key, start, stop - start),
        )

    def _set(self, backup_id: int, tag: str) -> _Set:
        with self.catalog.read() as s:
            row = s.scalar(select(BackupSet).where(BackupSet.id == backup_id))
            if row is None or set_tag(row.checksum) != tag or not row.storage_prefix:
                raise PayloadNotFound(f"backup set {backup_id}")
            if row.status != BackupStatus.SUCCESS or not row.is_avail:
                raise SetNotServable(f"backup set {backup_id} is {row.status}")
            return _Set(
                instance_id=row.instance_id,
                prefix=row.storage_prefix.rstrip("/") + "/",
                checksum=row.checksum,
                mtime=epoch_seconds(row.end_time),
                objects=[o.name for o in row.objects],
                encrypted=bool(row.encryption_key_id),
            )

    def db_objects(self, backup_id: int, checksum: str) -> dict[str, str]:
        """Database name -> stored object, from ``manifest.extra["db_objects"]`` (sets
        with one object per database); empty otherwise. Cached: a set never changes."""
        key = (backup_id, checksum)
        with self._lock:
            if key in self._db_objects:
                self._db_objects.move_to_end(key)
                return self._db_objects[key]
        try:
            found = self._db_objects_of(backup_id, checksum)
        except (PayloadNotFound, SetNotServable, StorageError, ValueError) as e:
            log.warning("backup set %s: no per-database links: %s", backup_id, e)
            return {}
        with self._lock:
            self._db_objects[key] = found
            while len(self._db_objects) > CACHE_ENTRIES:
                self._db_objects.popitem(last=False)
        return found

    def _db_objects_of(self, backup_id: int, checksum: str) -> dict[str, str]:
        found = self._set(backup_id, set_tag(checksum))
        data = self.storage.read_bytes(found.prefix + MANIFEST_NAME)
        if hashlib.sha256(data).hexdigest() != found.checksum:
            raise ValueError("manifest.json does not match the set's checksum")
        recorded: dict[str, str] = json.loads(
            Manifest.from_json(data).extra.get("db_objects", "{}")
        )
        stored = set(found.objects)
        result = {}
        for database, name in recorded.items():
            match = next((n for n in (name, name + ".zst", name + ".gz") if n in stored), None)
            if match is None:
                raise ValueError(f"object {name} of database {database} is not in the set")
            result[database] = match
        return result


_ENCRYPTED = "application/octet-stream"


def _content_type(name: str) -> str:
    if name.endswith(".zst"):
        return "application/zstd"
    if name.endswith(".gz"):
        return "application/gzip"
    if name.endswith(".json"):
        return "application/json"
    return "application/octet-stream"
