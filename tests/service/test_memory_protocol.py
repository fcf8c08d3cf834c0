"""The API on the in-memory engine, driven by the official SDK and raw signed requests:
the job rules a client sees, without real database servers (tests/fixtures/memory.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from alibabacloud_rds20140815 import models

from tests.fixtures.memory import MemoryRds
from tests.fixtures.service import signed_v1, tea_client, wait_job


def _create(rds: MemoryRds, **params: str) -> Any:
    return signed_v1(
        rds.endpoint, rds.key, "CreateBackup", {"DBInstanceId": rds.instance_id, **params}
    )


def test_sdk_backup_end_to_end(memory_rds: MemoryRds) -> None:
    client = tea_client(memory_rds.endpoint, memory_rds.key)
    job_id = client.create_backup(
        models.CreateBackupRequest(
            dbinstance_id=memory_rds.instance_id,
            backup_method="Logical",
            backup_strategy="db",
            dbname="shop",
        )
    ).body.backup_job_id
    job = wait_job(memory_rds.endpoint, memory_rds.key, memory_rds.instance_id, job_id, 30)
    assert job["BackupStatus"] == "Finished" and job["Process"] == "100"
    backups = client.describe_backups(
        models.DescribeBackupsRequest(
            dbinstance_id=memory_rds.instance_id, backup_id=job["BackupId"]
        )
    ).body
    item = backups.items.backup[0]
    assert (item.backup_status, item.backup_method, item.backup_mode) == (
        "Success",
        "Logical",
        "Manual",
    )
    assert item.backup_size > 0 and item.engine == "MariaDB"


def test_a_failed_tool_shows_as_a_failed_job_and_set(memory_rds: MemoryRds) -> None:
    memory_rds.server.fail_next_backup("Got error 28 from storage engine")
    job_id = _create(memory_rds, BackupMethod="Physical").json()["BackupJobId"]
    job = wait_job(memory_rds.endpoint, memory_rds.key, memory_rds.instance_id, job_id, 30)
    assert job["BackupStatus"] == "Failed"
    assert "Got error 28" in job["FailedReason"]
    listed = signed_v1(
        memory_rds.endpoint,
        memory_rds.key,
        "DescribeBackups",
        {"DBInstanceId": memory_rds.instance_id, "BackupId": job["BackupId"]},
    ).json()
    (backup,) = listed["Items"]["Backup"]
    assert backup["BackupStatus"] == "Failed"


def test_one_job_at_a_time_while_a_job_is_held(memory_rds: MemoryRds) -> None:
    gate = memory_rds.server.block_next_backup()
    try:
        job_id = _create(memory_rds, BackupMethod="Physical").json()["BackupJobId"]
        assert gate.wait_reached()
        second = _create(memory_rds, BackupMethod="Logical")
        assert second.status_code == 400 and second.json()["Code"] == "BackupJobExists"
        deadline = time.monotonic() + 10
        while True:
            tasks = signed_v1(
                memory_rds.endpoint,
                memory_rds.key,
                "DescribeBackupTasks",
                {"DBInstanceId": memory_rds.instance_id, "BackupJobId": job_id},
            ).json()
            (job,) = tasks["Items"]["BackupJob"]
            if int(job["Process"]) > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert job["BackupStatus"] == "Uploading" and 0 < int(job["Process"]) < 100
    finally:
        gate.release()
    done = wait_job(memory_rds.endpoint, memory_rds.key, memory_rds.instance_id, job_id, 30)
    assert done["BackupStatus"] == "Finished"
    assert _create(memory_rds, BackupMethod="Logical").status_code == 200


def test_the_asgi_app_answers_in_process(memory_rds: MemoryRds) -> None:
    """No socket: httpx calls the ASGI app in process; an unsigned call is refused in
    the Alibaba envelope, and nothing reached the server."""
    before = memory_rds.server.contents()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=memory_rds.memory.service.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://rds") as client:
            params = {"Action": "CreateBackup", "DBInstanceId": "x", "Format": "JSON"}
            return await client.get("/", params=params)

    resp = asyncio.run(call())
    assert resp.status_code == 400, resp.text
    assert resp.json()["Code"] and resp.json()["RequestId"]
    assert memory_rds.server.contents() == before
    assert memory_rds.server.backups_started == 0
