"""Removing backup sets: their catalog records inside the caller's transaction
(incrementals before the sets they build on), their stored objects once it committed.

Objects go last so that a failed transaction never leaves a record whose data is gone;
a storage failure leaves only unreferenced files, which are logged."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import delete
from sqlalchemy.orm import Session

from rdsbackup.catalog.models import BackupObject, BackupSet
from rdsbackup.storage.base import Storage

log = logging.getLogger(__name__)


def drop_records(s: Session, sets: Iterable[BackupSet]) -> list[str]:
    """Delete the sets' rows (newest first); returns their storage prefixes."""
    prefixes: list[str] = []
    for backup in sorted(sets, key=lambda b: b.id, reverse=True):
        if backup.storage_prefix:
            prefixes.append(backup.storage_prefix)
        s.execute(delete(BackupObject).where(BackupObject.backup_id == backup.id))
        s.execute(delete(BackupSet).where(BackupSet.id == backup.id))
    return prefixes


def delete_stored(storage: Storage, prefixes: Iterable[str]) -> None:
    for prefix in prefixes:
        try:
            storage.delete_prefix(prefix)
        except Exception:
            log.exception("deleting stored objects under %s failed", prefix)
