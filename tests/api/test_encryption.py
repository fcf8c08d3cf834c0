"""EnableBackupEncryption / DisableBackupEncryption and DescribeBackups' Encryption through
the official SDK, on the whole service over the memory engine; what a download link and
``fetch_set`` give for an encrypted set."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from alibabacloud_rds20140815 import models
from alibabacloud_tea_openapi.exceptions import ClientException

from rdsbackup.app import build_links
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service.fetch import FetchFailed, fetch_set
from rdsbackup.testing import MemoryService, memory_service
from tests.fixtures.memory import memory_settings, served, shop
from tests.fixtures.service import Key, signed_v1, tea_client, wait_job

KEYS = {k: base64.b64encode(os.urandom(32)).decode() for k in ("kms-old", "kms-new")}


@dataclass
class Encrypted:
    endpoint: str
    key: Key
    other_key: Key
    instance_id: str
    memory: MemoryService

    def call(self, action: str, **params: str) -> httpx.Response:
        return signed_v1(self.endpoint, self.key, action, params)

    def backup(self, **params: str) -> dict[str, Any]:
        resp = self.call("CreateBackup", DBInstanceId=self.instance_id, **params)
        assert resp.status_code == 200, resp.text
        job = wait_job(self.endpoint, self.key, self.instance_id, resp.json()["BackupJobId"], 30)
        assert job["BackupStatus"] == "Finished", job
        listed = self.call(
            "DescribeBackups", DBInstanceId=self.instance_id, BackupId=job["BackupId"]
        )
        return dict(listed.json()["Items"]["Backup"][0])


@pytest.fixture
def rds_enc(tmp_path: Path, migrated_catalog: Path) -> Iterator[Encrypted]:
    memory = memory_service(
        memory_settings(
            tmp_path, migrated_catalog, encryption_keys=KEYS, encryption_key_id="kms-new"
        )
    )
    instance_id = memory.add_instance(shop(), account="acct1")
    memory.add_instance(shop(), account="acct2")
    key = Key(*memory.service.core.accounts.create_key("acct1"))
    other = Key(*memory.service.core.accounts.create_key("acct2"))
    with served(memory) as endpoint:
        yield Encrypted(endpoint, key, other, instance_id, memory)


def _describe(rds: Encrypted, backup_id: str) -> Any:
    client = tea_client(rds.endpoint, rds.key)
    return client.describe_backups(
        models.DescribeBackupsRequest(dbinstance_id=rds.instance_id, backup_id=backup_id)
    ).body.items.backup[0]


def test_enable_through_the_sdk_then_sets_are_encrypted_and_described(rds_enc: Encrypted) -> None:
    plain = rds_enc.backup(BackupMethod="Logical")
    assert _describe(rds_enc, plain["BackupId"]).encryption == "{}"  # off by default

    client = tea_client(rds_enc.endpoint, rds_enc.key)
    body = client.enable_backup_encryption(
        models.EnableBackupEncryptionRequest(dbinstance_name=rds_enc.instance_id)
    ).body
    assert body.dbinstance_id == rds_enc.instance_id and body.request_id

    item = rds_enc.backup(BackupMethod="Logical")
    described = _describe(rds_enc, item["BackupId"])
    assert isinstance(described.encryption, str)
    assert json.loads(described.encryption) == {
        "EncryptionAlgorithm": "AES-256-GCM",
        "KeyId": "kms-new",
    }
    storage = rds_enc.memory.storage
    for key in storage.list(f"{rds_enc.instance_id}/"):
        if not key.endswith(MANIFEST_NAME) and f"/{item['BackupId']}" in key:
            assert storage.read_bytes(key).startswith(b"RDSE")

    client.enable_backup_encryption(
        models.EnableBackupEncryptionRequest(
            dbinstance_name=rds_enc.instance_id, encryption_key="kms-old"
        )
    )
    pinned = rds_enc.backup(BackupMethod="Logical")
    assert json.loads(_describe(rds_enc, pinned["BackupId"]).encryption)["KeyId"] == "kms-old"

    off = rds_enc.call("DisableBackupEncryption", DBInstanceName=rds_enc.instance_id)
    assert off.status_code == 200 and off.json()["DBInstanceId"] == rds_enc.instance_id
    assert rds_enc.backup(BackupMethod="Logical")["Encryption"] == "{}"


def test_bad_requests_are_refused_and_change_nothing(rds_enc: Encrypted) -> None:
    client = tea_client(rds_enc.endpoint, rds_enc.key)
    with pytest.raises(ClientException) as caught:
        client.enable_backup_encryption(
            models.EnableBackupEncryptionRequest(
                dbinstance_name=rds_enc.instance_id, encryption_key="no-such-key"
            )
        )
    assert caught.value.code == "InvalidParameter" and caught.value.status_code == 400
    assert "EncryptionKey" in str(caught.value.message)
    missing = rds_enc.call("EnableBackupEncryption")
    assert missing.status_code == 400 and missing.json()["Code"] == "MissingParameter"
    assert "DBInstanceName" in missing.json()["Message"]
    foreign = signed_v1(
        rds_enc.endpoint,
        rds_enc.other_key,
        "EnableBackupEncryption",
        {"DBInstanceName": rds_enc.instance_id},
    )
    assert foreign.status_code == 400
    assert foreign.json()["Code"] == "InvalidDBInstanceId.NotFound"
    unknown = rds_enc.call("DisableBackupEncryption", DBInstanceName="rm-nosuchinstance")
    assert unknown.json()["Code"] == "InvalidDBInstanceId.NotFound"
    assert rds_enc.backup(BackupMethod="Logical")["Encryption"] == "{}"


def test_the_link_serves_ciphertext_and_fetch_decrypts(rds_enc: Encrypted, tmp_path: Path) -> None:
    rds_enc.call("EnableBackupEncryption", DBInstanceName=rds_enc.instance_id)
    item = rds_enc.backup(BackupMethod="Logical", CompressType="zstd")
    archive = httpx.get(item["BackupDownloadURL"], timeout=30)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = Manifest.from_json(members.pop(MANIFEST_NAME))
    assert manifest.encryption["key_id"] == "kms-new"
    assert members and all(data.startswith(b"RDSE") for data in members.values())
    assert all(b"item 1" not in data for data in members.values())
    ranged = httpx.get(item["BackupDownloadURL"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == archive.content[:100]
    (by_db, *_) = item["BackupDownloadLinkByDB"]["BackupDownloadLinkByDB"]
    one = httpx.get(by_db["DownloadLink"], timeout=30)
    assert one.status_code == 200 and one.content.startswith(b"RDSE")
    assert one.headers["content-type"] == "application/octet-stream"

    core = rds_enc.memory.service.core
    out = tmp_path / "copy"
    got = fetch_set(
        core.catalog, build_links(core), int(item["BackupId"]), out, keyring=core.keyring
    )
    assert got.decrypted
    for obj in manifest.objects:
        plain = zstandard.ZstdDecompressor().stream_reader((out / obj.name).read_bytes()).read()
        assert plain and b"RDSE" not in plain[:4]
    shop_dump = next(o for o in manifest.objects if "shop" in o.name)
    dump = zstandard.ZstdDecompressor().stream_reader((out / shop_dump.name).read_bytes()).read()
    assert b"item 1" in dump

    kept = fetch_set(
        core.catalog, build_links(core), int(item["BackupId"]), tmp_path / "raw", decrypt=False
    )
    assert not kept.decrypted
    assert (tmp_path / "raw" / shop_dump.name).read_bytes() == members[shop_dump.name]
    with pytest.raises(FetchFailed, match="encrypted and no encryption keys"):
        fetch_set(core.catalog, build_links(core), int(item["BackupId"]), tmp_path / "nokey")
