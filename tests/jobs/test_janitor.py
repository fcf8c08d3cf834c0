"""Retention: the janitor removes sets past their expiry time, records and stored
objects, but never a set an unexpired incremental builds on, nor a locked one."""

from __future__ import annotations

from datetime import timedelta

from rdsbackup.catalog.models import BackupObject, BackupSet
from rdsbackup.jobs.janitor import Janitor
from rdsbackup.timeutil import utcnow
from tests.jobs.conftest import Rig


def expire(rig: Rig, *backup_ids: int, locked: bool = False) -> None:
    with rig.catalog.write() as s:
        for backup_id in backup_ids:
            backup = s.get_one(BackupSet, backup_id)
            backup.expire_time = utcnow() - timedelta(minutes=1)
            if locked:
                backup.store_status = "Disabled"


def stored(rig: Rig, backup_id: int) -> bool:
    with rig.catalog.read() as s:
        backup = s.get(BackupSet, backup_id)
        objects = s.query(BackupObject).filter_by(backup_id=backup_id).count()
    if backup is None:
        assert objects == 0
        return False
    return any(k.endswith(".zst") for k in rig.storage.list(backup.storage_prefix))


def test_expired_sets_go_with_their_objects_but_not_under_a_live_incremental(rig: Rig) -> None:
    janitor = Janitor(rig.catalog, rig.runner.leases, rig.storage)
    full = rig.run(method="Physical", backup_type="FullBackup").backup_id or 0
    inc = rig.run(method="Physical", backup_type="IncrementalBackup").backup_id or 0
    logical = rig.run(method="Logical").backup_id or 0
    prefix = rig.backup_set(full).storage_prefix

    expire(rig, full)
    assert janitor.expire_sets() == []  # the incremental still needs it
    assert stored(rig, full) and stored(rig, inc)

    expire(rig, logical, locked=True)
    expire(rig, inc)
    assert sorted(janitor.expire_sets()) == [full, inc]
    assert not stored(rig, full) and not stored(rig, inc)
    assert list(rig.storage.list(prefix)) == []
    assert stored(rig, logical)  # StoreStatus Disabled: kept past its expiry
