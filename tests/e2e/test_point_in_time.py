"""Point-in-time restore through the API: log backups switched on with ModifyBackupPolicy,
a writer that records when each of its statements committed, base sets taken while it
writes, then CloneDBInstance with RestoreTime to several seconds: each clone holds
exactly the writes committed before that second. DescribeBinlogFiles and
DescribeLocalAvailableRecoveryTime describe what was stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pymysql
import pytest

from rdsbackup.engines.base import ServerAccess
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Key, ServiceProcess, signed_v1, wait_job

LOGS_FAST = {"log_switch_seconds": 1.0, "log_ship_interval_seconds": 0.2}


# -- a writer that remembers when each change committed ------------------------------------


@dataclass(frozen=True)
class Change:
    """One autocommitted statement; it committed between ``before`` and ``after``."""

    before: datetime
    after: datetime
    op: str
    row: int
    value: int = 0


@dataclass
class Writer:
    engine: str
    access: ServerAccess
    base: dict[int, int] = field(default_factory=dict)
    """The table's rows before the first change (a clone's, for a restore of a restore)."""
    changes: list[Change] = field(default_factory=list)
    last_id: int = 0

    def _connect(self) -> Any:
        a = self.access
        if self.engine == "MariaDB":
            return pymysql.connect(
                host=a.host, port=a.port, user=a.user, password=a.password, autocommit=True
            )
        return psycopg.connect(
            host=a.host, port=a.port, user=a.user, password=a.password, dbname="w", autocommit=True
        )

    @property
    def table(self) -> str:
        return "w.t" if self.engine == "MariaDB" else "t"

    def create(self) -> None:
        if self.engine == "PostgreSQL":
            a = self.access
            with psycopg.connect(
                host=a.host,
                port=a.port,
                user=a.user,
                password=a.password,
                dbname="postgres",
                autocommit=True,
            ) as c:
                c.execute("CREATE DATABASE w")
        else:
            with self._connect() as c, c.cursor() as cur:
                cur.execute("CREATE DATABASE w")
        with self._connect() as c, c.cursor() as cur:
            cur.execute(f"CREATE TABLE {self.table} (id INT PRIMARY KEY, v INT NOT NULL)")

    def step(self, cur: Any, n: int) -> None:
        """Insert row n; every third step also bumps row n-1, every fifth deletes n-2."""
        ops: list[tuple[str, int, int, str]] = [
            ("insert", n, n, f"INSERT INTO {self.table} (id, v) VALUES ({n}, {n})")
        ]
        if n % 3 == 0:
            ops.append(("bump", n - 1, 0, f"UPDATE {self.table} SET v = v + 1 WHERE id = {n - 1}"))
        if n % 5 == 0:
            ops.append(("delete", n - 2, 0, f"DELETE FROM {self.table} WHERE id = {n - 2}"))
        for op, row, value, sql in ops:
            before = datetime.now(UTC)
            cur.execute(sql)
            self.changes.append(Change(before, datetime.now(UTC), op, row, value))

    @contextmanager
    def running(self, pause: float = 0.15) -> Iterator[None]:
        stop = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                with self._connect() as c, c.cursor() as cur:
                    while not stop.is_set():
                        self.last_id += 1
                        self.step(cur, self.last_id)
                        stop.wait(pause)
            except BaseException as e:  # reported by the test thread
                failed.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        assert not failed, failed

    def expected_at(self, when: datetime) -> dict[int, int]:
        """The table as it was at ``when``: every change that committed before it."""
        rows = dict(self.base)
        for ch in self.changes:
            if ch.after >= when:
                break
            if ch.op == "insert":
                rows[ch.row] = ch.value
            elif ch.op == "bump" and ch.row in rows:
                rows[ch.row] += 1
            elif ch.op == "delete":
                rows.pop(ch.row, None)
        return rows

    def clean_second(self, after: datetime, before: datetime) -> datetime:
        """A whole second in (after, before) that no change straddles (so which side of
        it each change committed on is known)."""
        t = after.replace(microsecond=0) + timedelta(seconds=1)
        while t < before:
            if not any(ch.before <= t <= ch.after for ch in self.changes):
                return t
            t += timedelta(seconds=1)
        raise AssertionError(f"no clean second between {after} and {before}")

    def rows_of(self, access: ServerAccess) -> dict[int, int]:
        a = access
        if self.engine == "MariaDB":
            conn: Any = pymysql.connect(host=a.host, port=a.port, user=a.user, password=a.password)
        else:
            conn = psycopg.connect(
                host=a.host, port=a.port, user=a.user, password=a.password, dbname="w"
            )
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, v FROM {self.table}")
            return {int(r[0]): int(r[1]) for r in cur.fetchall()}


# -- API helpers ----------------------------------------------------------------------------


@dataclass
class Api:
    svc: ServiceProcess
    key: Key

    def raw(self, action: str, **params: str) -> Any:
        return signed_v1(self.svc.endpoint, self.key, action, params)

    def call(self, action: str, **params: str) -> dict[str, Any]:
        resp = self.raw(action, **params)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def backup(self, instance_id: str, **params: str) -> dict[str, Any]:
        job_id = self.call("CreateBackup", DBInstanceId=instance_id, **params)["BackupJobId"]
        job = wait_job(self.svc.endpoint, self.key, instance_id, job_id)
        assert job["BackupStatus"] == "Finished", job
        found = self.call("DescribeBackups", DBInstanceId=instance_id, BackupId=job["BackupId"])
        return dict(found["Items"]["Backup"][0])

    def wait_task(self, instance_id: str, task_id: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            task = self.call("DescribeRestoreTasks", DBInstanceId=instance_id, TaskId=task_id)[
                "Items"
            ]["RestoreTask"][0]
            if task["Status"] in ("Finished", "Failed"):
                assert task["Status"] == "Finished", task
                return
            time.sleep(0.3)
        raise AssertionError(f"restore task {task_id} did not end")

    def enable_logs(self, instance_id: str) -> None:
        self.call(
            "ModifyBackupPolicy",
            DBInstanceId=instance_id,
            BackupPolicyMode="LogBackupPolicy",
            EnableBackupLog="1",
        )

    def files(self, instance_id: str, since: datetime, until: datetime) -> dict[str, Any]:
        return self.call(
            "DescribeBinlogFiles",
            DBInstanceId=instance_id,
            StartTime=(since - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            EndTime=(until + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            PageSize="100",
        )

    def recovery(self, instance_id: str) -> dict[str, Any]:
        return self.call("DescribeLocalAvailableRecoveryTime", DBInstanceId=instance_id)

    def wait_durable(self, instance_id: str, until: datetime, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            end = self.recovery(instance_id)["RecoveryEndTime"]
            if end and wire_time(end) >= until.replace(microsecond=0):
                return
            time.sleep(0.3)
        raise AssertionError(f"logs not durable to {until}: {self.recovery(instance_id)}")

    def clone_at(self, instance_id: str, when: datetime, **extra: str) -> tuple[str, ServerAccess]:
        clone_id = self.call(
            "CloneDBInstance",
            DBInstanceId=instance_id,
            RestoreTime=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            PayType="Postpaid",
            **extra,
        )["DBInstanceId"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            item = self.call("DescribeDBInstanceAttribute", DBInstanceId=clone_id)["Items"][
                "DBInstanceAttribute"
            ][0]
            if item["DBInstanceStatus"] != "Creating":
                break
            time.sleep(0.5)
        if item["DBInstanceStatus"] != "Running":
            tasks = self.call("DescribeRestoreTasks", DBInstanceId=instance_id)
            raise AssertionError(f"clone {clone_id}: {item['DBInstanceStatus']} {tasks}")
        return clone_id, ServerAccess(item["ConnectionString"], int(item["Port"]), "", "")


def _databases(access: ServerAccess) -> set[str]:
    a = access
    conn = pymysql.connect(host=a.host, port=a.port, user=a.user, password=a.password)
    with conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return {str(r[0]) for r in cur.fetchall()}


def wire_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.fixture
def logged(
    service_maker: Callable[..., ServiceProcess], server_factory: Callable[..., LocalServer]
) -> Callable[[str], tuple[Api, LocalServer, str, Writer]]:
    def make(engine: str) -> tuple[Api, LocalServer, str, Writer]:
        server = server_factory(engine)
        server.start()
        writer = Writer(engine, server.access())
        writer.create()
        svc = service_maker(**LOGS_FAST)
        key = svc.add_key("acct1")
        instance_id = svc.register(server, "acct1")
        svc.start()
        api = Api(svc, key)
        api.enable_logs(instance_id)
        return api, server, instance_id, writer

    return make


def _with_credentials(access: ServerAccess, server: LocalServer) -> ServerAccess:
    return ServerAccess(access.host, access.port, server.admin_user, server.admin_password)


# -- tests ------------------------------------------------------------------------------------


def test_mariadb_clone_to_a_second_holds_exactly_the_writes_before_it(
    logged: Callable[[str], tuple[Api, LocalServer, str, Writer]],
) -> None:
    api, server, instance_id, writer = logged("MariaDB")
    a = server.access()
    conn = pymysql.connect(
        host=a.host, port=a.port, user=a.user, password=a.password, autocommit=True
    )
    with conn, conn.cursor() as cur:  # a database the DbNames clone leaves out
        cur.execute("CREATE DATABASE other")
        cur.execute("CREATE TABLE other.o (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO other.o VALUES (1)")
    with writer.running():
        time.sleep(1.5)
        full = api.backup(instance_id, BackupMethod="Physical", BackupType="FullBackup")
        time.sleep(2.5)
        incremental = api.backup(
            instance_id, BackupMethod="Physical", BackupType="IncrementalBackup"
        )
        time.sleep(2.5)
    assert incremental["BackupType"] == "IncrementalBackup"
    last = writer.changes[-1].after
    api.wait_durable(instance_id, last)

    window = api.recovery(instance_id)
    assert window["LogBackupStatus"] == "Streaming", window
    assert window["LogGaps"]["LogGap"] == []
    assert wire_time(window["RecoveryBeginTime"]) <= wire_time(full["BackupEndTime"])

    full_end = wire_time(full["BackupEndTime"])
    incremental_end = wire_time(incremental["BackupEndTime"])
    targets = [
        writer.clean_second(full_end, incremental_end + timedelta(seconds=1)),
        writer.clean_second(incremental_end, last),
    ]
    for when, only in zip(targets, [{}, {"DbNames": "w"}], strict=True):
        clone = _with_credentials(api.clone_at(instance_id, when, **only)[1], server)
        want = writer.expected_at(when)
        assert want and want != writer.expected_at(last + timedelta(seconds=1))
        assert writer.rows_of(clone) == want, when
        assert ("other" in _databases(clone)) is not bool(only), only

    # RestoreDatabase (ext) to a time: the database as it was, beside the live one.
    task_id = api.call(
        "RestoreDatabase",
        DBInstanceId=instance_id,
        DBName="w",
        TargetDBName="w_then",
        RestoreTime=targets[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
    )["TaskId"]
    api.wait_task(instance_id, task_id)
    conn = pymysql.connect(host=a.host, port=a.port, user=a.user, password=a.password)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, v FROM w_then.t")
        assert {int(r[0]): int(r[1]) for r in cur.fetchall()} == writer.expected_at(targets[0])
    assert writer.rows_of(a) == writer.expected_at(last + timedelta(seconds=1))

    files = api.files(instance_id, full_end, last)
    items = files["Items"]["BinLogFile"]
    assert files["TotalRecordCount"] == len(items) >= 2
    numbers = [int(i["LogFileName"].rsplit(".", 1)[1]) for i in items]
    assert sorted(numbers) == list(range(min(numbers), max(numbers) + 1))
    assert all(len(i["Checksum"]) == 64 and i["FileSize"] > 0 for i in items)
    assert files["TotalFileSize"] == sum(i["FileSize"] for i in items)


def test_postgres_clone_to_a_second_and_again_from_the_clone_on_its_new_timeline(
    logged: Callable[[str], tuple[Api, LocalServer, str, Writer]],
) -> None:
    api, server, instance_id, writer = logged("PostgreSQL")
    with writer.running():
        time.sleep(1.5)
        full = api.backup(instance_id, BackupMethod="Physical")
        time.sleep(3.0)
    last = writer.changes[-1].after
    api.wait_durable(instance_id, last)
    full_end = wire_time(full["BackupEndTime"])
    first = writer.clean_second(full_end, last)
    clone_id, clone = api.clone_at(instance_id, first)
    clone = _with_credentials(clone, server)
    at_first = writer.expected_at(first)
    assert at_first and at_first != writer.expected_at(last + timedelta(seconds=1))
    assert writer.rows_of(clone) == at_first
    with psycopg.connect(
        host=clone.host,
        port=clone.port,
        user=clone.user,
        password=clone.password,
        dbname="postgres",
    ) as c:
        left = c.execute(
            "SELECT name FROM pg_file_settings"
            " WHERE name = 'restore_command' OR name LIKE 'recovery_target%'"
        ).fetchall()
        assert left == [], "the recovery settings outlived the promotion"

    # The clone was promoted onto timeline 2: back it up, stream its WAL, restore it.
    api.enable_logs(clone_id)
    again = Writer("PostgreSQL", clone, base=at_first, last_id=writer.last_id + 1000)
    with again.running():
        time.sleep(1.5)
        clone_full = api.backup(clone_id, BackupMethod="Physical")
        time.sleep(3.0)
    clone_last = again.changes[-1].after
    api.wait_durable(clone_id, clone_last)
    second = again.clean_second(wire_time(clone_full["BackupEndTime"]), clone_last)
    _, restored = api.clone_at(clone_id, second)
    at_second = again.expected_at(second)
    assert at_second != again.expected_at(clone_last + timedelta(seconds=1))
    assert again.rows_of(_with_credentials(restored, server)) == at_second

    items = api.files(clone_id, full_end, clone_last)["Items"]["BinLogFile"]
    kinds = {(i["LogFileType"], i["Timeline"]) for i in items}
    assert ("history", 2) in kinds and ("wal", 2) in kinds, kinds
    segments = sorted(int(i["LogFileName"][8:], 16) for i in items if i["LogFileType"] == "wal")
    assert segments == list(range(segments[0], segments[0] + len(segments)))
    assert all(i["FileSize"] > 0 and len(i["Checksum"]) == 64 for i in items)

    # Switched off, the stream gives up its replication slot (which would keep WAL forever).
    api.call(
        "ModifyBackupPolicy",
        DBInstanceId=instance_id,
        BackupPolicyMode="LogBackupPolicy",
        EnableBackupLog="0",
    )
    a = server.access()
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(
            host=a.host, port=a.port, user=a.user, password=a.password, dbname="postgres"
        ) as c:
            slots = c.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
        if not slots:
            break
        assert time.monotonic() < deadline, slots
        time.sleep(0.3)
    assert api.recovery(instance_id)["LogBackupStatus"] == "Stopped"


def test_restore_time_outside_the_window_is_refused(
    logged: Callable[[str], tuple[Api, LocalServer, str, Writer]],
) -> None:
    api, _server, instance_id, writer = logged("MariaDB")
    with writer.running():
        time.sleep(1.0)
    early = datetime.now(UTC) - timedelta(hours=1)
    resp = api.raw(
        "CloneDBInstance",
        DBInstanceId=instance_id,
        RestoreTime=early.strftime("%Y-%m-%dT%H:%M:%SZ"),
        PayType="Postpaid",
    )
    assert resp.status_code == 400 and resp.json()["Code"] == "InvalidRestoreTime", resp.text
    assert "window" in resp.json()["Message"]
    bad = api.raw(
        "CloneDBInstance", DBInstanceId=instance_id, RestoreTime="yesterday", PayType="Postpaid"
    )
    assert bad.status_code == 400 and bad.json()["Code"] == "InvalidRestoreTime.Format", bad.text
    instances = api.call("DescribeDBInstances", RegionId="cn-hangzhou")["TotalRecordCount"]
    assert instances == 1, "a refused clone created an instance"
