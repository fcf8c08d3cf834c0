"""Backup actions over HTTP: concurrency, quota, listing semantics, deletion, failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from aliyunsdkcore.request import CommonRequest

from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Rds, core_client, signed_v1, wait_job


def call(rds: Rds, action: str, **params: str) -> dict[str, object]:
    resp = signed_v1(rds.endpoint, rds.key, action, params)
    assert resp.status_code == 200, resp.text
    assert "Code" not in resp.json()
    return dict(resp.json())


def backup(rds: Rds, instance_id: str, **params: str) -> dict[str, object]:
    job_id = str(call(rds, "CreateBackup", DBInstanceId=instance_id, **params)["BackupJobId"])
    return wait_job(rds.endpoint, rds.key, instance_id, job_id)


def test_twenty_first_backup_of_the_day_is_refused(
    rds: Rds, fresh_instance: Callable[..., str]
) -> None:
    instance_id = fresh_instance("MariaDB")
    for _ in range(20):
        job = backup(rds, instance_id, BackupMethod="Logical", DBName="analytics")
        assert job["BackupStatus"] == "Finished", job
    resp = signed_v1(
        rds.endpoint,
        rds.key,
        "CreateBackup",
        {"DBInstanceId": instance_id, "BackupMethod": "Logical"},
    )
    assert resp.status_code == 400 and resp.json()["Code"] == "BackupTimesExceeded"
    assert call(rds, "DescribeBackups", DBInstanceId=instance_id)["TotalRecordCount"] == "20"


def test_terraform_flow_with_a_form_body(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    """alicloud_rds_backup: CreateBackup with a form body, poll DescribeBackupTasks by job
    id until Finished, read BackupId, DescribeBackups by id, DeleteBackup."""
    instance_id = fresh_instance("PostgreSQL")
    client = core_client(rds.endpoint, rds.key)

    def rpc(action: str, **body: str) -> dict[str, object]:
        req = CommonRequest(domain="127.0.0.1", version="2014-08-15", action_name=action)
        req.set_protocol_type("http")
        req.set_method("POST")
        for k, v in body.items():
            req.add_body_params(k, v)
        return dict(json.loads(client.do_action_with_exception(req)))

    created = rpc(
        "CreateBackup",
        DBInstanceId=instance_id,
        BackupMethod="Physical",
        BackupType="FullBackup",
        RegionId="cn-hangzhou",
        SourceIp="10.0.0.1",
    )
    job_id = created["BackupJobId"]
    assert isinstance(job_id, str)
    for _ in range(600):
        jobs = rpc(
            "DescribeBackupTasks", DBInstanceId=instance_id, BackupJobId=job_id, SourceIp="10.0.0.1"
        )["Items"]["BackupJob"]  # type: ignore[index]
        assert str(jobs[0]["BackupJobId"]) == job_id
        if jobs[0]["BackupStatus"] == "Finished":
            break
        time.sleep(0.3)
    backup_id = jobs[0]["BackupId"]
    assert isinstance(backup_id, str) and backup_id
    found = rpc(
        "DescribeBackups", DBInstanceId=instance_id, BackupId=backup_id, RegionId="cn-hangzhou"
    )["Items"]["Backup"]  # type: ignore[index]
    item = found[0]
    for name in (
        "BackupMethod",
        "BackupType",
        "DBInstanceId",
        "MetaStatus",
        "StoreStatus",
        "BackupId",
        "BackupStatus",
    ):
        assert isinstance(item[name], str), name
    assert (item["BackupMethod"], item["BackupType"], item["StoreStatus"]) == (
        "Physical",
        "FullBackup",
        "Enabled",
    )
    rpc("DeleteBackup", DBInstanceId=instance_id, BackupId=backup_id, RegionId="cn-hangzhou")
    again = rpc("DescribeBackups", DBInstanceId=instance_id, BackupId=backup_id)
    assert again["Items"] == {"Backup": []}


def test_task_listing_semantics(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("MariaDB")
    job_id = str(call(rds, "CreateBackup", DBInstanceId=instance_id)["BackupJobId"])
    unfinished = call(rds, "DescribeBackupTasks", DBInstanceId=instance_id)
    listed = [j["BackupJobId"] for j in unfinished["Items"]["BackupJob"]]  # type: ignore[index]
    assert listed in ([job_id], [])  # [] only if it already finished
    finished = wait_job(rds.endpoint, rds.key, instance_id, job_id)
    assert finished["BackupStatus"] == "Finished" and finished["BackupId"]
    assert finished["Process"] == "100"
    assert call(rds, "DescribeBackupTasks", DBInstanceId=instance_id)["Items"] == {"BackupJob": []}
    assert call(
        rds, "DescribeBackupTasks", DBInstanceId=instance_id, BackupJobStatus="Progressing"
    )["Items"] == {"BackupJob": []}
    by_id = call(rds, "DescribeBackupTasks", DBInstanceId=instance_id, BackupJobId=job_id)
    assert by_id["Items"]["BackupJob"][0]["BackupId"] == finished["BackupId"]  # type: ignore[index]
    assert call(
        rds,
        "DescribeBackupTasks",
        DBInstanceId=instance_id,
        BackupJobId=job_id,
        BackupMode="Automated",
    )["Items"] == {"BackupJob": []}


def test_failed_backup_says_why_and_never_shows_success(
    rds: Rds, postgres: LocalServer, tmp_path: Path
) -> None:
    access = postgres.access()
    with psycopg.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute("DROP ROLE IF EXISTS plain_reader")
        conn.execute("CREATE ROLE plain_reader LOGIN PASSWORD 'reader-pw'")
    password_file = tmp_path / "pw"
    password_file.write_text("reader-pw")
    out = rds.service.cli_json(
        "instance",
        "add",
        "--engine",
        "PostgreSQL",
        "--host",
        "127.0.0.1",
        "--port",
        str(postgres.port),
        "--user",
        "plain_reader",
        "--password-file",
        str(password_file),
        "--account",
        "acct1",
    )
    instance_id = str(out["DBInstanceId"])
    job = backup(rds, instance_id, BackupMethod="Physical")
    assert job["BackupStatus"] == "Failed"
    reason = str(job["FailedReason"])
    assert "pg_basebackup" in reason and "replication" in reason.lower()
    sets = call(rds, "DescribeBackups", DBInstanceId=instance_id)["Items"]["Backup"]  # type: ignore[index]
    assert [s["BackupStatus"] for s in sets] == ["Failed"]
    assert sets[0]["IsAvail"] == 0 and sets[0]["BackupSize"] == 0
    assert (
        call(rds, "DescribeBackups", DBInstanceId=instance_id, BackupStatus="Success")[
            "TotalRecordCount"
        ]
        == "0"
    )
    storage = rds.service.root / "state" / "backups" / instance_id
    assert not storage.exists() or not any(storage.rglob("*"))
    # the instance is free at once
    again = signed_v1(
        rds.endpoint,
        rds.key,
        "CreateBackup",
        {"DBInstanceId": instance_id, "BackupMethod": "Logical"},
    )
    assert again.status_code == 200
    wait_job(rds.endpoint, rds.key, instance_id, again.json()["BackupJobId"])


def test_describe_backups_filters_and_pages(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("MariaDB")
    first = backup(rds, instance_id, BackupMethod="Logical", DBName="shop")
    second = backup(rds, instance_id, BackupMethod="Physical")
    everything = call(rds, "DescribeBackups", DBInstanceId=instance_id)
    ids = [b["BackupId"] for b in everything["Items"]["Backup"]]  # type: ignore[index]
    assert ids == [second["BackupId"], first["BackupId"]]  # newest first
    assert (everything["PageNumber"], everything["PageRecordCount"]) == ("1", "2")
    logical = call(
        rds, "DescribeBackups", DBInstanceId=instance_id, BackupId=str(first["BackupId"])
    )
    item = logical["Items"]["Backup"][0]  # type: ignore[index]
    assert item["BackupDBNames"] == "shop" and item["BackupMethod"] == "Logical"
    assert item["BackupStartTime"].endswith("Z") and item["ConsistentTime"] > 0
    assert call(rds, "DescribeBackups", DBInstanceId=instance_id, PageNumber="2")["Items"] == {
        "Backup": []
    }
    assert (
        call(rds, "DescribeBackups", DBInstanceId=instance_id, BackupType="IncrementalBackup")[
            "TotalRecordCount"
        ]
        == "0"
    )
    future = call(
        rds,
        "DescribeBackups",
        DBInstanceId=instance_id,
        StartTime="2099-01-01T00:00Z",
        EndTime="2099-01-02T00:00Z",
    )
    assert future["TotalRecordCount"] == "0"
    past_to_future = call(
        rds,
        "DescribeBackups",
        DBInstanceId=instance_id,
        StartTime="2000-01-01T00:00Z",
        EndTime="2099-01-02T00:00Z",
    )
    assert past_to_future["TotalRecordCount"] == "2"


def test_delete_backup(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("MariaDB")
    a = backup(rds, instance_id, BackupMethod="Logical", DBName="shop")["BackupId"]
    b = backup(rds, instance_id, BackupMethod="Logical", DBName="analytics")["BackupId"]
    c = backup(rds, instance_id, BackupMethod="Logical", DBName="shop")["BackupId"]
    storage = rds.service.root / "state" / "backups" / instance_id
    assert len({p.parent for p in storage.rglob("manifest.json")}) == 3

    def delete(ids: str) -> httpx.Response:
        return signed_v1(
            rds.endpoint, rds.key, "DeleteBackup", {"DBInstanceId": instance_id, "BackupId": ids}
        )

    missing = delete(f"{a},999999")
    assert missing.status_code == 404 and missing.json()["Code"] == "InvalidBackupSetID.NotFound"
    rds.service.cli("backup", "lock", str(c))
    locked = delete(f"{a},{c}")
    assert locked.status_code == 403 and locked.json()["Code"] == "IncorrectBackupSetState"
    assert call(rds, "DescribeBackups", DBInstanceId=instance_id)["TotalRecordCount"] == "3"
    other = signed_v1(
        rds.endpoint,
        rds.other_key,
        "DeleteBackup",
        {"DBInstanceId": instance_id, "BackupId": str(a)},
    )
    assert other.status_code == 400 and other.json()["Code"] == "InvalidDBInstanceId.NotFound"
    assert delete(f"{a},{b}").status_code == 200
    left = call(rds, "DescribeBackups", DBInstanceId=instance_id)["Items"]["Backup"]  # type: ignore[index]
    assert [x["BackupId"] for x in left] == [c]
    assert left[0]["StoreStatus"] == "Disabled"
    assert len({p.parent for p in storage.rglob("manifest.json")}) == 1
    assert delete(",".join(str(i) for i in range(1, 102))).json()["Code"] == "InvalidParameter"


def test_instance_actions(rds: Rds) -> None:
    listed = call(rds, "DescribeDBInstances", RegionId="cn-hangzhou")
    ids = [i["DBInstanceId"] for i in listed["Items"]["DBInstance"]]  # type: ignore[index]
    assert rds.mariadb_id in ids and rds.postgres_id in ids
    other = signed_v1(rds.endpoint, rds.other_key, "DescribeDBInstances", {"RegionId": "x"})
    assert rds.mariadb_id not in other.text
    attr = call(rds, "DescribeDBInstanceAttribute", DBInstanceId=rds.mariadb_id)
    item = attr["Items"]["DBInstanceAttribute"][0]  # type: ignore[index]
    assert item["DBInstanceStatus"] == "Running" and item["Engine"] == "MariaDB"
    assert item["EngineVersion"].startswith("10.") and item["ResourceGroupId"] == "rg-acct1"
    assert item["LockMode"] == "Unlock" and item["Port"].isdigit()
    dbs = call(rds, "DescribeDatabases", DBInstanceId=rds.postgres_id)
    names = {d["DBName"] for d in dbs["Databases"]["Database"]}  # type: ignore[index]
    assert {"shop", "analytics"} <= names
    one = call(rds, "DescribeDatabases", DBInstanceId=rds.postgres_id, DBName="shop")
    db = one["Databases"]["Database"][0]  # type: ignore[index]
    assert db["CharacterSetName"] == "UTF8" and db["Engine"] == "PostgreSQL" and "Collate" in db
    missing_region = signed_v1(rds.endpoint, rds.key, "DescribeDBInstances", {})
    assert missing_region.json()["Code"] == "MissingParameter"
