"""Removing backup sets, crash-safe: mark, delete the objects, drop the record.

1. ``mark_deleting``, inside the caller's transaction: the sets get ``deleting_at`` and
   ``is_avail=False``. Once that commits, nothing offers them any more: DescribeBackups
   hides them, and restores, verification, downloads, links and the incremental planner
   all take only available sets.
2. ``finish_removals``: for each marked set, incrementals before the sets they build on,
   its stored objects are deleted, then its records are dropped.

A process killed anywhere in between leaves marked sets, never a set shown as available
whose objects are (partly) gone, nor objects no record points at: the janitor's next pass
(and every service start) finishes the marked removals. A storage failure leaves the set
marked, to be tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupObject, BackupSet
from rdsbackup.storage.base import Storage
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)

BATCH = 100
"""Sets whose records are dropped in one transaction (after all their objects went)."""


def mark_deleting(s: Session, sets: Iterable[BackupSet], now: datetime | None = None) -> list[int]:
    """Mark the sets as being deleted (commit, then ``finish_removals``); returns ids."""
    when = now or utcnow()
    ids: list[int] = []
    for backup in sets:
        backup.deleting_at = backup.deleting_at or when
        backup.is_avail = False
        ids.append(backup.id)
    s.flush()
    return ids


def finish_removals(
    catalog: Catalog, storage: Storage, ids: Iterable[int] | None = None
) -> list[int]:
    """Delete the objects, then the records, of the marked sets (``ids``, else every
    marked set), newest first so that incrementals go before their parents. Returns the
    ids whose records are gone."""
    with catalog.read() as s:
        query = select(BackupSet.id, BackupSet.storage_prefix).where(
            BackupSet.deleting_at.is_not(None)
        )
        if ids is not None:
            query = query.where(BackupSet.id.in_(list(ids)))
        marked = list(s.execute(query.order_by(BackupSet.id.desc())))
    removed: list[int] = []
    for start in range(0, len(marked), BATCH):
        gone: list[int] = []
        batch = marked[start : start + BATCH]
        needed = _needed(catalog, [backup_id for backup_id, _ in batch])
        for backup_id, prefix in batch:
            if backup_id in needed:
                log.error("backup set %s is marked but a live set builds on it: kept", backup_id)
                continue
            try:
                if prefix:
                    storage.delete_prefix(prefix)
            except Exception:
                log.exception(
                    "deleting the objects of backup set %s failed; retried later", backup_id
                )
                continue
            gone.append(backup_id)
        removed += _drop_records(catalog, gone)
    return removed


def _needed(catalog: Catalog, ids: list[int]) -> set[int]:
    """Those of ``ids`` an incremental not being removed builds on (callers never mark a
    parent without its incrementals; this guards the objects if one did)."""
    with catalog.read() as s:
        parents = s.scalars(
            select(BackupSet.parent_id).where(
                BackupSet.parent_id.in_(ids), BackupSet.deleting_at.is_(None)
            )
        )
        return {p for p in parents if p is not None}


def _drop_records(catalog: Catalog, ids: list[int]) -> list[int]:
    """Drop the records of sets whose objects are gone, newest first, in one transaction;
    a set whose incremental is still there (its removal failed) waits for it."""
    dropped: list[int] = []
    with catalog.write() as s:
        for backup_id in ids:
            child = s.scalar(select(BackupSet.id).where(BackupSet.parent_id == backup_id).limit(1))
            if child is not None:
                log.warning("backup set %s waits for its incremental %s to go", backup_id, child)
                continue
            s.execute(delete(BackupObject).where(BackupObject.backup_id == backup_id))
            s.execute(delete(BackupSet).where(BackupSet.id == backup_id))
            dropped.append(backup_id)
    return dropped
