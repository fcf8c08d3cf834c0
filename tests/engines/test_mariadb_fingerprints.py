"""When a MariaDB Physical set keeps the fingerprints taken during its backup: only from a
snapshot that opened while commits were blocked and sits at the backup's binlog
position. Against the shared sample server (read only here)."""

from __future__ import annotations

from rdsbackup.engines.admin import admin_for
from rdsbackup.engines.base import BackupMethod, BackupPlan, BackupStrategy
from rdsbackup.engines.mariadb.physical import proven_fingerprints
from rdsbackup.engines.mariadb.sql import SnapshotSession
from rdsbackup.instances.servers import LocalServer

INSTANCE = BackupPlan(method=BackupMethod.PHYSICAL)


def test_a_snapshot_that_never_opened_gives_no_fingerprints(mariadb: LocalServer) -> None:
    with SnapshotSession(mariadb.access()) as snapshot:
        found, why = proven_fingerprints(
            snapshot, {"binlog_file": "b.1", "binlog_pos": "4"}, INSTANCE
        )
    assert found is None and "no snapshot opened" in why


def test_a_snapshot_at_another_binlog_position_gives_none(mariadb: LocalServer) -> None:
    with SnapshotSession(mariadb.access()) as snapshot:
        snapshot.open()
        here = snapshot.binlog_position()
        assert here  # the test servers write a binary log
        elsewhere = {**here, "binlog_pos": str(int(here["binlog_pos"]) + 1)}
        found, why = proven_fingerprints(snapshot, elsewhere, INSTANCE)
    assert found is None and "the snapshot opened at" in why


def test_a_snapshot_at_the_backups_position_fingerprints_what_a_verify_would(
    mariadb: LocalServer,
) -> None:
    access = mariadb.access()
    admin = admin_for("MariaDB")
    databases = admin.user_databases(access)
    with SnapshotSession(access) as snapshot:
        snapshot.open()
        found, why = proven_fingerprints(snapshot, snapshot.binlog_position(), INSTANCE)
    assert why == "" and found == admin.fingerprint(access, databases)
    shop_only = BackupPlan(
        method=BackupMethod.PHYSICAL, strategy=BackupStrategy.DB, databases=("shop",)
    )
    with SnapshotSession(access) as snapshot:
        snapshot.open()
        partial, _ = proven_fingerprints(snapshot, snapshot.binlog_position(), shop_only)
    assert partial and {k.split(".")[0] for k in partial} == {"shop"}
