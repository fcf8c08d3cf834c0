"""Opening stored backup sets for reading: the manifest must match the catalog's
checksum and every object must be present with its recorded size; object contents are
verified as they are read (SetReader)."""

from __future__ import annotations

import hashlib

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupSet
from rdsbackup.engines.base import StoredSet
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.states import BackupStatus
from rdsbackup.storage.base import Storage, StorageError
from rdsbackup.storage.keys import Keyring, KeyUnavailable
from rdsbackup.storage.streams import SetReader


class SetUnavailable(Exception):
    pass


def checked_manifest(storage: Storage, backup: BackupSet) -> Manifest:
    prefix = backup.storage_prefix
    if backup.status != BackupStatus.SUCCESS or not prefix:
        raise SetUnavailable(f"backup set {backup.id} is not a complete set")
    try:
        data = storage.read_bytes(prefix + MANIFEST_NAME)
    except StorageError as e:
        raise SetUnavailable(f"backup set {backup.id} has no manifest in storage: {e}") from None
    if hashlib.sha256(data).hexdigest() != backup.checksum:
        raise SetUnavailable(f"backup set {backup.id}: its manifest does not match the catalog")
    manifest = Manifest.from_json(data)
    for obj in manifest.objects:
        try:
            size = storage.size(prefix + obj.name)
        except StorageError:
            raise SetUnavailable(f"backup set {backup.id}: object {obj.name} is missing") from None
        if size != obj.size:
            raise SetUnavailable(f"backup set {backup.id}: object {obj.name} has the wrong size")
    return manifest


class SetStore:
    def __init__(self, catalog: Catalog, storage: Storage, keyring: Keyring | None = None) -> None:
        self.catalog = catalog
        self.storage = storage
        self.keyring = keyring

    def open(self, backup_id: int) -> StoredSet:
        with self.catalog.read() as s:
            backup = s.get(BackupSet, backup_id)
            if backup is None:
                raise SetUnavailable(f"backup set {backup_id} does not exist")
        manifest = checked_manifest(self.storage, backup)
        try:
            reader = SetReader(self.storage, backup.storage_prefix, manifest, self.keyring)
        except KeyUnavailable as e:
            raise SetUnavailable(f"backup set {backup_id} cannot be decrypted: {e}") from None
        return StoredSet(manifest, reader)

    def chain(self, backup_id: int) -> list[StoredSet]:
        """The set and every set it builds on, the full set first."""
        ids = [backup_id]
        with self.catalog.read() as s:
            current = s.get(BackupSet, backup_id)
            while current is not None and current.parent_id is not None:
                ids.append(current.parent_id)
                current = s.get(BackupSet, current.parent_id)
        return [self.open(i) for i in reversed(ids)]
