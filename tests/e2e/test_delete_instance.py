"""DeleteDBInstance through the official SDK: a clone's server and folder go away, a
registered server is only forgotten, ReleasedKeepPolicy decides which sets survive, and
a refused call changes nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rdsbackup.catalog.models import BackupSet
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Rds, signed_v1, tea_client, wait_job


def call(rds: Rds, action: str, **params: str) -> dict[str, Any]:
    resp = signed_v1(rds.endpoint, rds.key, action, params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def delete(rds: Rds, instance_id: str, keep: str | None = None) -> None:
    from alibabacloud_rds20140815 import models

    request = models.DeleteDBInstanceRequest(dbinstance_id=instance_id, released_keep_policy=keep)
    answer = tea_client(rds.endpoint, rds.key).delete_dbinstance(request)
    assert answer.status_code == 200 and answer.body.request_id


def backup(rds: Rds, instance_id: str) -> str:
    job_id = call(rds, "CreateBackup", DBInstanceId=instance_id, BackupMethod="Logical")[
        "BackupJobId"
    ]
    job = wait_job(rds.endpoint, rds.key, instance_id, job_id)
    assert job["BackupStatus"] == "Finished", job
    return str(job["BackupId"])


def set_folder(rds: Rds, backup_id: str) -> Path:
    with rds.service.catalog().read() as s:
        prefix = s.get_one(BackupSet, int(backup_id)).storage_prefix
    folder = rds.service.root / "state" / "backups" / prefix
    assert (folder / "manifest.json").is_file(), folder
    return folder


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def not_found(rds: Rds, instance_id: str) -> None:
    resp = signed_v1(
        rds.endpoint, rds.key, "DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}
    )
    assert (resp.status_code, resp.json()["Code"]) == (400, "InvalidDBInstanceId.NotFound")
    listed = call(rds, "DescribeDBInstances", RegionId="cn-hangzhou")["Items"]["DBInstance"]
    assert instance_id not in [i["DBInstanceId"] for i in listed]


def test_deleting_a_clone_stops_its_server_and_removes_its_folder(
    rds: Rds, fresh_instance: Callable[..., str]
) -> None:
    source = fresh_instance("MariaDB")
    backup_id = backup(rds, source)
    clone_id = call(
        rds, "CloneDBInstance", DBInstanceId=source, BackupId=backup_id, PayType="Postpaid"
    )["DBInstanceId"]
    deadline = time.monotonic() + 300
    while True:
        attr = call(rds, "DescribeDBInstanceAttribute", DBInstanceId=clone_id)
        item = attr["Items"]["DBInstanceAttribute"][0]
        if item["DBInstanceStatus"] != "Creating" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert item["DBInstanceStatus"] == "Running", item
    port, folder = int(item["Port"]), rds.service.root / "state" / "instances" / clone_id
    assert answers(port) and folder.is_dir()

    delete(rds, clone_id)

    not_found(rds, clone_id)
    assert not answers(port) and not folder.exists()
    again = signed_v1(rds.endpoint, rds.key, "DeleteDBInstance", {"DBInstanceId": clone_id})
    assert (again.status_code, again.json()["Code"]) == (400, "InvalidDBInstanceId.NotFound")
    time.sleep(2.5)  # a health round (probe_interval_seconds=2) must not bring it back
    assert not answers(port) and not folder.exists()
    backups = call(rds, "DescribeBackups", DBInstanceId=source)["Items"]["Backup"]
    assert [b["BackupId"] for b in backups] == [backup_id], "the source keeps its sets"


def test_keep_policy_decides_which_sets_survive(
    rds: Rds, fresh_instance: Callable[..., str], postgres: LocalServer
) -> None:
    latest = fresh_instance("PostgreSQL")
    first, second = backup(rds, latest), backup(rds, latest)
    old, new = set_folder(rds, first), set_folder(rds, second)

    delete(rds, latest, "Lastest")

    not_found(rds, latest)
    assert not old.exists() and (new / "manifest.json").is_file()
    assert answers(postgres.access().port), "a registered server is untouched"

    none = fresh_instance("PostgreSQL")
    gone = set_folder(rds, backup(rds, none))
    delete(rds, none)  # ReleasedKeepPolicy defaults to None
    assert not gone.exists()


def test_refused_delete_changes_nothing(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("MariaDB")
    backup_id = backup(rds, instance_id)
    rds.service.cli("backup", "lock", backup_id)
    stored = set_folder(rds, backup_id)

    refused = signed_v1(rds.endpoint, rds.key, "DeleteDBInstance", {"DBInstanceId": instance_id})
    assert (refused.status_code, refused.json()["Code"]) == (403, "IncorrectBackupSetState")
    assert "StoreStatus Disabled" in refused.json()["Message"]
    bad = signed_v1(
        rds.endpoint,
        rds.key,
        "DeleteDBInstance",
        {"DBInstanceId": instance_id, "ReleasedKeepPolicy": "Some"},
    )
    assert (bad.status_code, bad.json()["Code"]) == (400, "InvalidParameter")
    other = signed_v1(
        rds.endpoint, rds.other_key, "DeleteDBInstance", {"DBInstanceId": instance_id}
    )
    assert (other.status_code, other.json()["Code"]) == (400, "InvalidDBInstanceId.NotFound")
    item = call(rds, "DescribeDBInstanceAttribute", DBInstanceId=instance_id)["Items"][
        "DBInstanceAttribute"
    ][0]
    assert item["DBInstanceStatus"] == "Running" and (stored / "manifest.json").is_file()

    delete(rds, instance_id, "All")
    not_found(rds, instance_id)
    assert (stored / "manifest.json").is_file(), "a locked set is kept with All"
