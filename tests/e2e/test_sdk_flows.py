"""The official SDKs drive CreateBackup -> DescribeBackupTasks -> DescribeBackups."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aliyunsdkrds.request.v20140815.CreateBackupRequest import CreateBackupRequest
from aliyunsdkrds.request.v20140815.DescribeBackupsRequest import DescribeBackupsRequest
from aliyunsdkrds.request.v20140815.DescribeBackupTasksRequest import DescribeBackupTasksRequest

from tests.fixtures.service import Rds, core_call, tea_client


def _poll_tea(client: Any, instance_id: str, job_id: str) -> dict[str, Any]:
    from alibabacloud_rds20140815 import models

    seen = set()
    for _ in range(600):
        job = client.describe_backup_tasks(
            models.DescribeBackupTasksRequest(dbinstance_id=instance_id, backup_job_id=int(job_id))
        ).body.items.backup_job[0]
        seen.add(job.backup_status)
        if job.backup_status in ("Finished", "Failed"):
            return {"job": job, "seen": seen}
        time.sleep(0.2)
    raise AssertionError("job did not finish")


@pytest.mark.parametrize("v2", [False, True], ids=["tea-v3", "tea-v2-signature"])
def test_tea_sdk_physical_backup_end_to_end(rds: Rds, v2: bool) -> None:
    from alibabacloud_rds20140815 import models

    client = tea_client(rds.endpoint, rds.key, v2=v2)
    resp = client.create_backup(
        models.CreateBackupRequest(
            dbinstance_id=rds.mariadb_id, backup_method="Physical", backup_type="FullBackup"
        )
    )
    job_id = resp.body.backup_job_id
    assert isinstance(job_id, str) and job_id.isdigit()
    assert resp.body.request_id
    result = _poll_tea(client, rds.mariadb_id, job_id)
    job = result["job"]
    assert job.backup_status == "Finished", rds.service.log_tail()
    assert job.process == "100" and job.job_mode == "Manual"
    backups = client.describe_backups(
        models.DescribeBackupsRequest(dbinstance_id=rds.mariadb_id, backup_id=job.backup_id)
    ).body
    assert backups.total_record_count == "1"
    item = backups.items.backup[0]
    assert item.backup_id == job.backup_id
    assert item.backup_status == "Success"
    assert item.backup_method == "Physical" and item.backup_type == "FullBackup"
    assert item.engine == "MariaDB" and item.engine_version.startswith("10.")
    assert item.backup_size > 0 and len(item.checksum) == 64
    assert item.store_status == "Enabled" and item.is_avail == 1


def test_core_sdk_logical_backup_end_to_end(rds: Rds) -> None:
    create = CreateBackupRequest()
    create.set_DBInstanceId(rds.postgres_id)
    create.set_BackupMethod("Logical")
    create.set_BackupStrategy("db")
    create.set_DBName("shop")
    job_id = core_call(rds.endpoint, rds.key, create)["BackupJobId"]
    assert isinstance(job_id, str)
    for _ in range(600):
        tasks = DescribeBackupTasksRequest()
        tasks.set_DBInstanceId(rds.postgres_id)
        tasks.set_BackupJobId(job_id)
        job = core_call(rds.endpoint, rds.key, tasks)["Items"]["BackupJob"][0]
        if job["BackupStatus"] in ("Finished", "Failed"):
            break
        time.sleep(0.2)
    assert job["BackupStatus"] == "Finished", json.dumps(job)
    describe = DescribeBackupsRequest()
    describe.set_DBInstanceId(rds.postgres_id)
    describe.set_BackupId(job["BackupId"])
    item = core_call(rds.endpoint, rds.key, describe)["Items"]["Backup"][0]
    assert item["BackupMethod"] == "Logical"
    assert item["BackupScale"] == "Database" and item["BackupDBNames"] == "shop"
    assert item["Engine"] == "PostgreSQL"
