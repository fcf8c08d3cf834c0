"""Encrypted backups of real servers through the real service and the official SDK: the
stored objects hold no plaintext (an unencrypted set of the same data does), restores
bring the data back, a flipped byte fails the restore naming the object,
``rdsbackup backup download`` decrypts with the key from the settings, and keys rotate
across restarts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from alibabacloud_rds20140815 import models

from rdsbackup.catalog.models import BackupSet
from rdsbackup.engines.base import ServerAccess
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from tests.e2e.test_restore import call, clone_access, wait_instance, wait_task
from tests.fixtures.service import RDSBACKUP, Key, Rds, ServiceProcess, tea_client, wait_job

FIRST_KEY = base64.b64encode(os.urandom(32)).decode()
KEY_LINE = f'encryption_keys = {{ "kek-2026" = "{FIRST_KEY}" }}\n'


@dataclass
class Encrypted:
    rds: Rds
    server: LocalServer
    instance_id: str
    marker: str

    @property
    def service(self) -> ServiceProcess:
        return self.rds.service

    def backup(self, **params: str) -> dict[str, Any]:
        job_id = call(self.rds, "CreateBackup", DBInstanceId=self.instance_id, **params)[
            "BackupJobId"
        ]
        job = wait_job(self.rds.endpoint, self.rds.key, self.instance_id, job_id, 300)
        assert job["BackupStatus"] == "Finished", (job, self.service.log_tail())
        found = call(
            self.rds, "DescribeBackups", DBInstanceId=self.instance_id, BackupId=job["BackupId"]
        )
        return dict(found["Items"]["Backup"][0])

    def enable(self) -> None:
        client = tea_client(self.rds.endpoint, self.rds.key)
        body = client.enable_backup_encryption(
            models.EnableBackupEncryptionRequest(dbinstance_name=self.instance_id)
        ).body
        assert body.dbinstance_id == self.instance_id


def _set_folder(enc: Encrypted, backup_id: str) -> Path:
    catalog = enc.service.catalog()
    try:
        with catalog.read() as s:
            prefix = s.get_one(BackupSet, int(backup_id)).storage_prefix
    finally:
        catalog.dispose()
    return enc.service.root / "state" / "backups" / prefix


def _objects_of(enc: Encrypted, backup_id: str) -> dict[str, bytes]:
    """The set's stored objects (not its manifest), by name, read from the state folder."""
    root = _set_folder(enc, backup_id)
    manifest = Manifest.from_json((root / MANIFEST_NAME).read_bytes())
    return {o.name: (root / o.name).read_bytes() for o in manifest.objects}


def _marker_rows(engine: str, access: ServerAccess, database: str) -> list[str]:
    if engine == "MariaDB":
        conn = pymysql.connect(
            host=access.host, port=access.port, user=access.user, password=access.password
        )
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT note FROM `{database}`.vault")
                return [str(r[0]) for r in cur.fetchall()]
        finally:
            conn.close()
    with psycopg.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        dbname=database,
    ) as pg:
        return [str(r[0]) for r in pg.execute("SELECT note FROM vault").fetchall()]


def _add_marker(engine: str, access: ServerAccess, marker: str) -> None:
    statement = "CREATE TABLE vault (id INT PRIMARY KEY, note VARCHAR(200))"
    insert = f"INSERT INTO vault VALUES (1, '{marker}')"
    if engine == "MariaDB":
        conn = pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            database="shop",
            autocommit=True,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                cur.execute(insert)
                cur.execute("FLUSH TABLES")
        finally:
            conn.close()
        return
    with psycopg.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        dbname="shop",
        autocommit=True,
    ) as pg:
        pg.execute(statement)
        pg.execute(insert)
        pg.execute("CHECKPOINT")


@pytest.fixture
def encrypted(
    request: pytest.FixtureRequest,
    service_maker: Callable[..., ServiceProcess],
    server_factory: Callable[..., LocalServer],
) -> Encrypted:
    engine = request.param
    server = server_factory(engine)
    server.start()
    load_sample(engine, server.access(), rows=300)
    marker = f"top-secret-{uuid.uuid4().hex}"
    _add_marker(engine, server.access(), marker)
    svc = service_maker()
    with svc.config.open("a") as f:  # a TOML table (the fixture writes JSON values)
        f.write(KEY_LINE)
    key = svc.add_key("acct1")
    instance_id = svc.register(server, "acct1")
    svc.start()
    rds = Rds(svc, key, Key("", ""), instance_id, instance_id)
    return Encrypted(rds, server, instance_id, marker)


def _holds(objects: dict[str, bytes], marker: str) -> bool:
    return any(marker.encode() in data for data in objects.values())


@pytest.mark.parametrize("encrypted", ["MariaDB"], indirect=True)
def test_mariadb_physical_set_encrypted_restores_and_a_flipped_byte_is_named(
    encrypted: Encrypted,
) -> None:
    enc = encrypted
    plain = enc.backup(BackupMethod="Physical", BackupType="FullBackup", CompressType="none")
    assert plain["Encryption"] == "{}"
    assert _holds(_objects_of(enc, plain["BackupId"]), enc.marker)  # the check can fail

    enc.enable()
    item = enc.backup(BackupMethod="Physical", BackupType="FullBackup", CompressType="none")
    assert json.loads(item["Encryption"]) == {
        "EncryptionAlgorithm": "AES-256-GCM",
        "KeyId": "kek-2026",
    }
    assert item["BackupType"] == "FullBackup" and "ParentBackupId" not in item
    objects = _objects_of(enc, item["BackupId"])
    assert objects and all(data.startswith(b"RDSE") for data in objects.values())
    assert not _holds(objects, enc.marker)

    clone_id = call(
        enc.rds,
        "CloneDBInstance",
        DBInstanceId=enc.instance_id,
        BackupId=item["BackupId"],
        PayType="Postpaid",
    )["DBInstanceId"]
    attr, _ = wait_instance(enc.rds, clone_id)
    assert attr["DBInstanceStatus"] == "Running", attr
    target = clone_access(attr, enc.server.access())
    assert _marker_rows("MariaDB", target, "shop") == [enc.marker]

    name, data = max(objects.items(), key=lambda kv: len(kv[1]))
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    (_set_folder(enc, item["BackupId"]) / name).write_bytes(bytes(flipped))
    started = call(enc.rds, "VerifyBackup", DBInstanceId=enc.instance_id, BackupId=item["BackupId"])
    task = wait_task(enc.rds, enc.instance_id, started["TaskId"])
    assert task["Status"] == "Failed", task
    assert f"object {name} is corrupt" in task["FailedReason"], task

    # The default compression: the decrypted zstd stream is piped into `zstd -d`.
    zstd = enc.backup(BackupMethod="Physical", BackupType="FullBackup")
    objects = _objects_of(enc, zstd["BackupId"])
    assert "data.xbstream.zst" in objects
    flipped = bytearray(objects["data.xbstream.zst"])
    flipped[len(flipped) // 3] ^= 0x80
    (_set_folder(enc, zstd["BackupId"]) / "data.xbstream.zst").write_bytes(bytes(flipped))
    started = call(enc.rds, "VerifyBackup", DBInstanceId=enc.instance_id, BackupId=zstd["BackupId"])
    task = wait_task(enc.rds, enc.instance_id, started["TaskId"])
    assert task["Status"] == "Failed", task
    assert "object data.xbstream.zst is corrupt" in task["FailedReason"], task


@pytest.mark.parametrize("encrypted", ["PostgreSQL"], indirect=True)
def test_postgres_logical_set_encrypted_restores_and_downloads_decrypted(
    encrypted: Encrypted, tmp_path: Path
) -> None:
    enc = encrypted
    enc.enable()
    item = enc.backup(BackupMethod="Logical", DBName="shop", CompressType="none")
    assert json.loads(item["Encryption"])["KeyId"] == "kek-2026"
    objects = _objects_of(enc, item["BackupId"])
    assert objects and not _holds(objects, enc.marker)

    task_id = call(
        enc.rds,
        "RestoreDatabase",
        DBInstanceId=enc.instance_id,
        BackupId=item["BackupId"],
        DBName="shop",
        TargetDBName="shop_restored",
    )["TaskId"]
    task = wait_task(enc.rds, enc.instance_id, task_id)
    assert task["Status"] == "Finished", task
    assert _marker_rows("PostgreSQL", enc.server.access(), "shop_restored") == [enc.marker]

    out = tmp_path / "copy"
    result = json.loads(
        enc.service.cli("backup", "download", item["BackupId"], "--out", str(out))
        .strip()
        .splitlines()[-1]
    )
    assert result["Decrypted"] is True
    downloaded = {name: (out / name).read_bytes() for name in objects}
    assert _holds(downloaded, enc.marker)  # pg_dump --compress=0, stored uncompressed
    assert all(d[:5] == b"PGDMP" for n, d in downloaded.items() if n.startswith("db/"))

    raw = tmp_path / "raw"
    enc.service.cli("backup", "download", item["BackupId"], "--out", str(raw), "--encrypted")
    assert {n: (raw / n).read_bytes() for n in objects} == objects

    # A service without the key refuses to decrypt, saying why.
    other = enc.service.root / "nokey.toml"
    other.write_text(enc.service.config.read_text().replace(KEY_LINE, ""))
    done = subprocess.run(
        [RDSBACKUP, "backup", "download", item["BackupId"], "--out", str(tmp_path / "x")],
        env={**enc.service.env(), "RDSBACKUP_CONFIG": str(other)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "'kek-2026' is not configured" in done.stderr, done.stderr


def _key_line(keys: dict[str, str], active: str) -> str:
    table = ", ".join(f'"{k}" = "{v}"' for k, v in keys.items())
    return f'encryption_keys = {{ {table} }}\nencryption_key_id = "{active}"\n'


@pytest.mark.parametrize("encrypted", ["PostgreSQL"], indirect=True)
def test_key_rotation_across_restarts(encrypted: Encrypted) -> None:
    """A new active key encrypts new sets; the old sets stay readable while their key is
    listed, and say which key they need once it is not."""
    enc = encrypted
    enc.enable()
    old = enc.backup(BackupMethod="Logical", DBName="shop")
    assert json.loads(old["Encryption"])["KeyId"] == "kek-2026"

    base = enc.service.config.read_text().replace(KEY_LINE, "")
    new_key = base64.b64encode(os.urandom(32)).decode()
    enc.service.stop()
    enc.service.config.write_text(
        base + _key_line({"kek-2026": FIRST_KEY, "kek-2027": new_key}, "kek-2027")
    )
    enc.service.start()
    new = enc.backup(BackupMethod="Logical", DBName="shop")
    assert json.loads(new["Encryption"])["KeyId"] == "kek-2027"
    for item in (old, new):
        started = call(
            enc.rds, "VerifyBackup", DBInstanceId=enc.instance_id, BackupId=item["BackupId"]
        )
        task = wait_task(enc.rds, enc.instance_id, started["TaskId"])
        assert task["Status"] == "Finished", task

    enc.service.stop()
    enc.service.config.write_text(base + _key_line({"kek-2027": new_key}, "kek-2027"))
    enc.service.start()
    started = call(enc.rds, "VerifyBackup", DBInstanceId=enc.instance_id, BackupId=old["BackupId"])
    task = wait_task(enc.rds, enc.instance_id, started["TaskId"])
    assert task["Status"] == "Failed", task
    assert "encryption key 'kek-2026' is not configured" in task["FailedReason"], task
