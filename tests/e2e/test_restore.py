"""Restores through the API: CloneDBInstance of every kind of set, taken under concurrent
writes; RestoreDatabase into a running instance; VerifyBackup; corrupt objects."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
import pytest

from rdsbackup.catalog.models import BackupSet
from rdsbackup.engines.base import ServerAccess
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.dataset import fingerprint
from tests.fixtures.service import Rds, signed_v1, tea_client, wait_job

ACCOUNTS, START = 10, 1000
SAMPLE = ["shop", "analytics"]


# -- a writer that keeps an invariant: every transfer moves 1 and writes one ledger row ---------


def _sql(engine: str, access: ServerAccess, statements: list[str]) -> list[list[Any]]:
    """Runs the statements in one transaction; returns each statement's rows."""
    results: list[list[Any]] = []
    if engine == "MariaDB":
        conn = pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            autocommit=False,
        )
        try:
            with conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                for st in statements:
                    cur.execute(st)
                    results.append(list(cur.fetchall()))
            conn.commit()
            return results
        finally:
            conn.close()
    with psycopg.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        dbname="bank",
    ) as pg:
        pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for st in statements:
            cur = pg.execute(st)
            results.append(cur.fetchall() if cur.description else [])
        return results


def create_bank(engine: str, access: ServerAccess) -> None:
    if engine == "PostgreSQL":
        with psycopg.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            dbname="postgres",
            autocommit=True,
        ) as pg:
            pg.execute("CREATE DATABASE bank")
        prefix = ""
    else:
        _sql(engine, access, ["CREATE DATABASE bank"])
        prefix = "bank."
    values = ",".join(f"({i}, {START})" for i in range(1, ACCOUNTS + 1))
    _sql(
        engine,
        access,
        [
            f"CREATE TABLE {prefix}accounts (id INT PRIMARY KEY, balance INT NOT NULL)",
            f"CREATE TABLE {prefix}ledger (id INT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL)",
            f"INSERT INTO {prefix}accounts VALUES {values}",
        ],
    )


@contextmanager
def transfers(engine: str, access: ServerAccess) -> Iterator[list[int]]:
    """Runs transfers until the block ends; yields a list that ends up holding [count]."""
    stop = threading.Event()
    done: list[int] = []
    prefix = "bank." if engine == "MariaDB" else ""

    (rows,) = _sql(engine, access, [f"SELECT COALESCE(MAX(id), 0) FROM {prefix}ledger"])
    start = int(rows[0][0])

    def run() -> None:
        n, rng = start, random.Random(start)
        while not stop.is_set():
            n += 1
            a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
            _sql(
                engine,
                access,
                [
                    f"UPDATE {prefix}accounts SET balance = balance - 1 WHERE id = {a}",
                    f"INSERT INTO {prefix}ledger VALUES ({n}, {a}, {b})",
                    f"UPDATE {prefix}accounts SET balance = balance + 1 WHERE id = {b}",
                ],
            )
        done.append(n)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join()


def check_bank(engine: str, access: ServerAccess) -> int:
    """The bank is one consistent snapshot; returns its number of transfers."""
    prefix = "bank." if engine == "MariaDB" else ""
    ledger, balances = _sql(
        engine,
        access,
        [
            f"SELECT id, src, dst FROM {prefix}ledger ORDER BY id",
            f"SELECT id, balance FROM {prefix}accounts",
        ],
    )
    ids = [r[0] for r in ledger]
    assert ids == list(range(1, len(ids) + 1)), "the ledger has gaps: not one snapshot"
    balance = dict(balances)
    for account in range(1, ACCOUNTS + 1):
        expected = (
            START
            - sum(1 for _, s, _ in ledger if s == account)
            + sum(1 for _, _, d in ledger if d == account)
        )
        assert balance[account] == expected, f"account {account} is torn"
    return len(ids)


# -- API helpers --------------------------------------------------------------------------------


def call(rds: Rds, action: str, **params: str) -> dict[str, Any]:
    resp = signed_v1(rds.endpoint, rds.key, action, params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_instance(
    rds: Rds, instance_id: str, timeout: float = 300
) -> tuple[dict[str, Any], set[str]]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attr = call(rds, "DescribeDBInstanceAttribute", DBInstanceId=instance_id)
        item = attr["Items"]["DBInstanceAttribute"][0]
        seen.add(item["DBInstanceStatus"])
        if item["DBInstanceStatus"] not in ("Creating",):
            return item, seen
        time.sleep(0.5)
    raise AssertionError(f"{instance_id} still Creating after {timeout}s")


def wait_task(rds: Rds, instance_id: str, task_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = call(rds, "DescribeRestoreTasks", DBInstanceId=instance_id, TaskId=task_id)["Items"][
            "RestoreTask"
        ][0]
        if task["Status"] in ("Finished", "Failed"):
            return dict(task)
        time.sleep(0.5)
    raise AssertionError(f"restore task {task_id} did not end")


def clone_access(item: dict[str, Any], source: ServerAccess) -> ServerAccess:
    return ServerAccess(
        host=item["ConnectionString"],
        port=int(item["Port"]),
        user=source.user,
        password=source.password,
    )


@dataclass
class Source:
    engine: str
    server: LocalServer
    instance_id: str

    @property
    def access(self) -> ServerAccess:
        return self.server.access()


@pytest.fixture
def source(
    rds: Rds, server_factory: Callable[..., LocalServer], request: pytest.FixtureRequest
) -> Source:
    engine = request.param
    server = server_factory(engine)
    server.start()
    load_sample(engine, server.access(), rows=500)
    create_bank(engine, server.access())
    return Source(engine, server, rds.service.register(server, "acct1"))


def backup_under_writes(rds: Rds, src: Source, **params: str) -> tuple[dict[str, Any], int, int]:
    with transfers(src.engine, src.access) as done:
        time.sleep(0.3)
        before = check_bank(src.engine, src.access)
        job_id = call(rds, "CreateBackup", DBInstanceId=src.instance_id, **params)["BackupJobId"]
        job = wait_job(rds.endpoint, rds.key, src.instance_id, job_id)
        time.sleep(0.2)
    assert job["BackupStatus"] == "Finished", job
    return job, before, done[0]


CELLS = [
    ("MariaDB", "Physical"),
    ("MariaDB", "Logical"),
    ("MariaDB", "Snapshot"),
    ("PostgreSQL", "Physical"),
    ("PostgreSQL", "Logical"),
    ("PostgreSQL", "Snapshot"),
]


@pytest.mark.parametrize(
    ("source", "method"), CELLS, indirect=["source"], ids=[f"{e}-{m}" for e, m in CELLS]
)
def test_clone_restores_a_consistent_copy(rds: Rds, source: Source, method: str) -> None:
    from alibabacloud_rds20140815 import models

    job, before, after = backup_under_writes(rds, source, BackupMethod=method)
    client = tea_client(rds.endpoint, rds.key)
    resp = client.clone_dbinstance(
        models.CloneDBInstanceRequest(
            dbinstance_id=source.instance_id, backup_id=job["BackupId"], pay_type="Postpaid"
        )
    )
    clone_id = resp.body.dbinstance_id
    assert clone_id.startswith("rm-" if source.engine == "MariaDB" else "pgm-")
    assert resp.body.order_id and resp.body.request_id
    item, seen = wait_instance(rds, clone_id)
    assert item["DBInstanceStatus"] == "Running", item
    assert seen <= {"Creating", "Running"}, seen
    assert item["Engine"] == source.engine
    target = clone_access(item, source.access)
    assert fingerprint(source.engine, target, SAMPLE) == fingerprint(
        source.engine, source.access, SAMPLE
    )
    restored = check_bank(source.engine, target)
    assert before <= restored <= after


@pytest.mark.parametrize("source", ["MariaDB"], indirect=True)
def test_clone_of_an_incremental_replays_the_whole_chain(rds: Rds, source: Source) -> None:
    full, _, _ = backup_under_writes(rds, source, BackupMethod="Physical", BackupType="FullBackup")
    first, _, _ = backup_under_writes(rds, source, BackupMethod="Physical")
    second, before, after = backup_under_writes(
        rds, source, BackupMethod="Physical", BackupType="IncrementalBackup"
    )
    item = call(
        rds, "DescribeBackups", DBInstanceId=source.instance_id, BackupId=second["BackupId"]
    )["Items"]["Backup"][0]
    assert item["BackupType"] == "IncrementalBackup"
    assert item["ParentBackupId"] == first["BackupId"]
    clone_id = call(
        rds,
        "CloneDBInstance",
        DBInstanceId=source.instance_id,
        BackupId=second["BackupId"],
        PayType="Postpaid",
    )["DBInstanceId"]
    attr, seen = wait_instance(rds, clone_id)
    assert attr["DBInstanceStatus"] == "Running" and seen <= {"Creating", "Running"}, attr
    target = clone_access(attr, source.access)
    assert fingerprint(source.engine, target, SAMPLE) == fingerprint(
        source.engine, source.access, SAMPLE
    )
    assert before <= check_bank(source.engine, target) <= after
    refused = signed_v1(
        rds.endpoint,
        rds.key,
        "DeleteBackup",
        {"DBInstanceId": source.instance_id, "BackupId": full["BackupId"]},
    )
    assert refused.status_code == 403 and refused.json()["Code"] == "IncorrectBackupSetState"


@pytest.mark.parametrize("source", ["PostgreSQL", "MariaDB"], indirect=True)
def test_restore_one_database_leaves_the_rest_untouched(
    rds: Rds, source: Source, server_factory: Callable[..., LocalServer]
) -> None:
    job, _, _ = backup_under_writes(rds, source, BackupMethod="Physical")
    target_server = server_factory(source.engine)
    target_server.start()
    load_sample(source.engine, target_server.access(), rows=300)
    target_id = rds.service.register(target_server, "acct1")
    untouched = fingerprint(source.engine, target_server.access(), SAMPLE)
    task_id = call(
        rds,
        "RestoreDatabase",
        DBInstanceId=source.instance_id,
        BackupId=job["BackupId"],
        DBName="analytics",
        TargetDBInstanceId=target_id,
        TargetDBName="analytics_restored",
    )["TaskId"]
    task = wait_task(rds, target_id, task_id)
    assert task["Status"] == "Finished", task
    assert fingerprint(source.engine, target_server.access(), SAMPLE) == untouched
    restored = fingerprint(source.engine, target_server.access(), ["analytics_restored"])
    original = fingerprint(source.engine, source.access, ["analytics"])
    assert restored == {
        k.replace("analytics.", "analytics_restored.", 1): v for k, v in original.items()
    }
    dbs = call(rds, "DescribeDatabases", DBInstanceId=target_id)["Databases"]["Database"]
    assert "analytics_restored" in {d["DBName"] for d in dbs}
    again = signed_v1(
        rds.endpoint,
        rds.key,
        "RestoreDatabase",
        {
            "DBInstanceId": source.instance_id,
            "BackupId": job["BackupId"],
            "DBName": "analytics",
            "TargetDBInstanceId": target_id,
            "TargetDBName": "shop",
        },
    )
    assert again.status_code == 400 and again.json()["Code"] == "InvalidDBName.Duplicate"
    too_long = signed_v1(
        rds.endpoint,
        rds.key,
        "RestoreDatabase",
        {
            "DBInstanceId": source.instance_id,
            "BackupId": job["BackupId"],
            "DBName": "analytics",
            "TargetDBInstanceId": target_id,
            "TargetDBName": "x" * 70,
        },
    )
    assert too_long.status_code == 400 and too_long.json()["Code"] == "InvalidParameter"
    assert '"TargetDBName"' in too_long.json()["Message"]


def verify(rds: Rds, source: Source, backup_id: str) -> dict[str, Any]:
    """VerifyBackup, then the restore task once it ended."""
    started = call(rds, "VerifyBackup", DBInstanceId=source.instance_id, BackupId=backup_id)
    return wait_task(rds, source.instance_id, started["TaskId"])


def describe_backup(rds: Rds, source: Source, backup_id: str) -> dict[str, Any]:
    items = call(rds, "DescribeBackups", DBInstanceId=source.instance_id, BackupId=backup_id)
    return dict(items["Items"]["Backup"][0])


@pytest.mark.parametrize("source", ["MariaDB", "PostgreSQL"], indirect=True)
def test_verify_backup_records_the_outcome(rds: Rds, source: Source) -> None:
    job, _, _ = backup_under_writes(rds, source, BackupMethod="Logical")
    taken = describe_backup(rds, source, job["BackupId"])
    # Fingerprinted at backup time, while transfers kept writing: a verification passes
    # only if the restore matches the dump's own snapshot.
    assert taken["FingerprintSource"] == "Backup" and "VerifyStatus" not in taken
    assert verify(rds, source, job["BackupId"])["Status"] == "Finished"
    item = describe_backup(rds, source, job["BackupId"])
    assert item["VerifyStatus"] == "Passed" and item["VerifiedAt"].endswith("Z")
    assert item["RestoreSeconds"] > 0 and item["FingerprintSource"] == "Backup"
    assert verify(rds, source, job["BackupId"])["Status"] == "Finished"
    by_cli = rds.service.cli_json("backup", "verify", job["BackupId"])
    assert by_cli["Status"] == "Finished", by_cli
    restored = rds.service.cli_json(
        "backup", "restore-db", job["BackupId"], "--database", "shop", "--new-name", "shop_copy"
    )
    assert restored["Status"] == "Finished", restored
    assert fingerprint(source.engine, source.access, ["shop_copy"]) == {
        k.replace("shop.", "shop_copy.", 1): v
        for k, v in fingerprint(source.engine, source.access, ["shop"]).items()
    }


@pytest.mark.parametrize("source", ["MariaDB", "PostgreSQL"], indirect=True)
def test_verify_compares_with_the_fingerprints_taken_at_backup_time(
    rds: Rds, source: Source
) -> None:
    job, before, after = backup_under_writes(rds, source, BackupMethod="Logical")
    ledger = "bank.ledger" if source.engine == "MariaDB" else "bank.public.ledger"
    with rds.service.catalog().write() as s:
        backup = s.get_one(BackupSet, int(job["BackupId"]))
        recorded = json.loads(backup.fingerprints)
        # One snapshot between the transfers seen before and after the backup.
        assert before <= recorded[ledger][0] <= after
        recorded[ledger][0] += 1  # as if the dump had lost a row
        backup.fingerprints = json.dumps(recorded)
    task = verify(rds, source, job["BackupId"])
    assert task["Status"] == "Failed" and ledger in task["FailedReason"], task
    item = describe_backup(rds, source, job["BackupId"])
    assert item["VerifyStatus"] == "Failed" and ledger in item["VerifyReason"]


IMAGES = [
    ("MariaDB", "Physical"),
    ("MariaDB", "Snapshot"),
    ("PostgreSQL", "Physical"),
    ("PostgreSQL", "Snapshot"),
]


@pytest.mark.parametrize(
    ("source", "method"), IMAGES, indirect=["source"], ids=[f"{e}-{m}" for e, m in IMAGES]
)
def test_image_sets_fingerprinted_at_backup_time_where_provable(
    rds: Rds, source: Source, method: str
) -> None:
    """MariaDB: a snapshot opened while commits are blocked (by mariadb-backup, kept at
    the backup's binlog position; by the Snapshot's own lock session), transfers
    committing around it. PostgreSQL: snapshots that a restore point matches, where the
    set's WAL is made to end."""
    job, _, _ = backup_under_writes(rds, source, BackupMethod=method)
    taken = describe_backup(rds, source, job["BackupId"])
    assert taken["FingerprintSource"] == "Backup"
    assert verify(rds, source, job["BackupId"])["Status"] == "Finished"
    item = describe_backup(rds, source, job["BackupId"])
    assert item["VerifyStatus"] == "Passed" and item["FingerprintSource"] == "Backup"


@pytest.mark.parametrize("source", ["PostgreSQL"], indirect=True)
def test_corrupt_object_stops_clone_and_verify(rds: Rds, source: Source) -> None:
    job, _, _ = backup_under_writes(rds, source, BackupMethod="Physical")
    storage = rds.service.root / "state" / "backups" / source.instance_id
    (obj,) = [p for p in storage.rglob("base.tar.zst")]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    resp = signed_v1(
        rds.endpoint,
        rds.key,
        "CloneDBInstance",
        {"DBInstanceId": source.instance_id, "BackupId": job["BackupId"], "PayType": "Postpaid"},
    )
    clone_id = resp.json()["DBInstanceId"]
    item, seen = wait_instance(rds, clone_id)
    assert item["DBInstanceStatus"] == "Failed" and "Running" not in seen
    assert "base.tar.zst" in item["StatusReason"]
    task = verify(rds, source, job["BackupId"])
    assert task["Status"] == "Failed" and "base.tar.zst" in task["FailedReason"]
    backup = call(
        rds, "DescribeBackups", DBInstanceId=source.instance_id, BackupId=job["BackupId"]
    )["Items"]["Backup"][0]
    assert backup["VerifyStatus"] == "Failed"


def test_clone_parameter_errors(rds: Rds) -> None:
    def clone(**params: str) -> dict[str, Any]:
        resp = signed_v1(
            rds.endpoint, rds.key, "CloneDBInstance", {"DBInstanceId": rds.mariadb_id, **params}
        )
        assert resp.status_code >= 400
        return {"status": resp.status_code, **resp.json()}

    assert clone(PayType="Postpaid")["Code"] == "MissingParameter"
    no_logs = clone(PayType="Postpaid", RestoreTime="2026-01-01T00:00:00Z")
    assert (no_logs["status"], no_logs["Code"]) == (403, "InvalidBackupLogStatus")
    assert clone(BackupId="1")["Code"] == "MissingParameter"
    assert clone(PayType="Monthly", BackupId="1")["Code"] == "InvalidParameter"
    missing = clone(PayType="Postpaid", BackupId="987654")
    assert (missing["status"], missing["Code"]) == (404, "InvalidBackupSetID.NotFound")


@pytest.mark.parametrize("engine", ["MariaDB", "PostgreSQL"])
def test_clone_of_a_logical_set_of_an_instance_without_user_databases(
    rds: Rds, server_factory: Callable[..., LocalServer], engine: str
) -> None:
    from alibabacloud_rds20140815 import models

    server = server_factory(engine)
    server.start()
    instance_id = rds.service.register(server, "acct1")
    job_id = call(rds, "CreateBackup", DBInstanceId=instance_id, BackupMethod="Logical")
    job = wait_job(rds.endpoint, rds.key, instance_id, job_id["BackupJobId"])
    assert job["BackupStatus"] == "Finished", job
    resp = tea_client(rds.endpoint, rds.key).clone_dbinstance(
        models.CloneDBInstanceRequest(
            dbinstance_id=instance_id, backup_id=job["BackupId"], pay_type="Postpaid"
        )
    )
    item, _ = wait_instance(rds, resp.body.dbinstance_id)
    assert item["DBInstanceStatus"] == "Running", item
    databases = call(rds, "DescribeDatabases", DBInstanceId=resp.body.dbinstance_id)
    assert databases["Databases"]["Database"] == []
