"""BackupType: Auto takes incrementals on a verified full chain; explicit types; chains
in manifests and in DeleteBackup."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rdsbackup.catalog.models import BackupSet
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service import errors
from rdsbackup.service.backups import CreateBackupRequest
from tests.jobs.conftest import Rig


def manifest(rig: Rig, backup_id: int) -> Manifest:
    prefix = rig.backup_set(backup_id).storage_prefix
    return Manifest.from_json(rig.storage.read_bytes(prefix + MANIFEST_NAME))


def test_auto_builds_a_chain_on_the_newest_full_set(rig: Rig) -> None:
    full = rig.run(method="Physical")
    assert full.status == "Finished" and full.kind == "FullBackup"
    first = rig.run(method="Physical")  # BackupType defaults to Auto
    second = rig.run(method="Physical", backup_type="Auto")
    assert (first.kind, second.kind) == ("IncrementalBackup", "IncrementalBackup")
    assert rig.backup_set(first.backup_id or 0).parent_id == full.backup_id
    assert rig.backup_set(second.backup_id or 0).parent_id == first.backup_id
    m = manifest(rig, second.backup_id or 0)
    assert m.kind == "IncrementalBackup"
    assert m.parent_backup_id == str(first.backup_id)
    assert m.chain == [str(full.backup_id), str(first.backup_id)]
    parent = manifest(rig, first.backup_id or 0)
    assert m.extra["from_lsn"] == parent.extra["to_lsn"]
    forced_full = rig.run(method="Physical", backup_type="FullBackup")
    assert forced_full.kind == "FullBackup"
    assert rig.backup_set(forced_full.backup_id or 0).parent_id is None
    after = rig.run(method="Physical")
    assert rig.backup_set(after.backup_id or 0).parent_id == forced_full.backup_id


def test_auto_takes_a_full_when_the_full_set_is_too_old(rig: Rig) -> None:
    full = rig.run(method="Physical")
    with rig.catalog.write() as s:  # the full set ended two days ago: past the interval
        backup = s.get_one(BackupSet, full.backup_id)
        backup.end_time = backup.end_time - timedelta(days=2)
    assert rig.run(method="Physical").kind == "FullBackup"


def test_auto_takes_a_full_when_the_full_set_is_damaged(rig: Rig) -> None:
    full = rig.run(method="Physical")
    prefix = rig.backup_set(full.backup_id or 0).storage_prefix
    rig.storage.write_bytes(prefix + MANIFEST_NAME, b"{}")
    assert rig.run(method="Physical").kind == "FullBackup"


def test_explicit_incremental_needs_a_full_set_and_a_capable_engine(rig: Rig) -> None:
    with pytest.raises(errors.UnsupportedBackupType, match="full"):
        rig.service.create_backup(
            rig.who,
            CreateBackupRequest(
                rig.instance_id, method="Physical", backup_type="IncrementalBackup"
            ),
        )
    rig.run(method="Physical")
    job = rig.run(method="Physical", backup_type="IncrementalBackup")
    assert job.status == "Finished" and job.kind == "IncrementalBackup"
    with pytest.raises(errors.UnsupportedBackupType):
        rig.service.create_backup(
            rig.who,
            CreateBackupRequest(rig.instance_id, method="Logical", backup_type="IncrementalBackup"),
        )


def test_a_full_set_cannot_be_deleted_without_its_incrementals(rig: Rig) -> None:
    full = rig.run(method="Physical").backup_id or 0
    inc = rig.run(method="Physical").backup_id or 0
    with pytest.raises(errors.BackupLocked, match=str(inc)):
        rig.service.delete_backups(rig.who, rig.instance_id, [full])
    rig.service.delete_backups(rig.who, rig.instance_id, [full, inc])
    assert list(rig.storage.list(rig.instance_id + "/")) == []
