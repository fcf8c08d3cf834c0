"""Encrypted sets through the job runner (memory engine, real catalog and storage): the
policy and the setting decide, the set records its key, incrementals and restores read
encrypted sets, keys rotate, and damage to objects, manifest or wrapped key is named."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, BackupSet, policy_for
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.jobs.runner import RunOptions
from rdsbackup.jobs.sets import SetStore, SetUnavailable
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service.backups import CreateBackupRequest
from rdsbackup.storage.crypto import DecryptionFailed
from rdsbackup.storage.keys import Keyring
from rdsbackup.storage.memory import MemoryStorage
from rdsbackup.storage.streams import ChecksumMismatch
from rdsbackup.testing import MemoryRig, memory_rig
from tests.jobs.conftest import shop_server

K1 = Keyring({"k1": os.urandom(32)}, "k1")
MARKER = "customer 17"


class Jobs:
    def __init__(self, tmp_path: Path, options: RunOptions) -> None:
        self.storage = MemoryStorage()
        self.rig: MemoryRig = memory_rig(
            Catalog(f"sqlite:///{tmp_path / 'catalog.db'}"), self.storage, options=options
        )
        self.server = shop_server()
        self.instance_id, self.who = self.rig.add_instance(self.server)

    def with_options(self, options: RunOptions) -> None:
        self.rig.runner.options = options

    def backup(self, **request: object) -> BackupSet:
        job_id = self.rig.service.create_backup(
            self.who,
            CreateBackupRequest(self.instance_id, **request),  # type: ignore[arg-type]
        )
        self.rig.runner.run(job_id)
        with self.rig.catalog.read() as s:
            job = s.get_one(BackupJob, job_id)
            assert job.status == "Finished", job.failed_reason
            return s.get_one(BackupSet, job.backup_id)

    def failed_reason(self, **request: object) -> str:
        job_id = self.rig.service.create_backup(
            self.who,
            CreateBackupRequest(self.instance_id, **request),  # type: ignore[arg-type]
        )
        self.rig.runner.run(job_id)
        with self.rig.catalog.read() as s:
            job = s.get_one(BackupJob, job_id)
            assert job.status == "Failed"
            return job.failed_reason

    def set_policy(self, on: bool | None, key_id: str = "") -> None:
        with self.rig.catalog.write() as s:
            policy = policy_for(s, self.instance_id)
            policy.backup_encryption, policy.encryption_key_id = on, key_id
            s.add(policy)

    def stored(self, backup: BackupSet) -> dict[str, bytes]:
        return {
            key: self.storage.read_bytes(key) for key in self.storage.list(backup.storage_prefix)
        }

    def sets(self, keyring: Keyring | None) -> SetStore:
        return SetStore(self.rig.catalog, self.storage, keyring)


@pytest.fixture
def jobs(tmp_path: Path) -> Jobs:
    return Jobs(tmp_path, RunOptions(heartbeat_seconds=0.2, encrypt_backups=True, keyring=K1))


def _manifest(jobs: Jobs, backup: BackupSet) -> Manifest:
    return Manifest.from_json(jobs.storage.read_bytes(backup.storage_prefix + MANIFEST_NAME))


def test_an_encrypted_set_records_its_key_and_holds_no_plaintext(jobs: Jobs) -> None:
    backup = jobs.backup(method="Logical", compression="none")
    manifest = _manifest(jobs, backup)
    assert manifest.encryption["key_id"] == "k1"
    assert manifest.encryption["algorithm"] == "AES-256-GCM"
    assert backup.encryption_key_id == "k1"
    assert backup.wrapped_data_key == manifest.encryption["wrapped_key"]
    assert json.loads(backup.encryption) == {"EncryptionAlgorithm": "AES-256-GCM", "KeyId": "k1"}
    for key, data in jobs.stored(backup).items():
        if not key.endswith(MANIFEST_NAME):
            assert data.startswith(b"RDSE") and MARKER.encode() not in data
            obj = manifest.object(key.removeprefix(backup.storage_prefix))
            assert obj.sha256 == hashlib.sha256(data).hexdigest()
    target = MemoryServer()
    stored = jobs.sets(K1).open(backup.id)
    jobs.rig.engine.restore_logical(stored.manifest, stored.source, jobs.rig.engine.serve(target))
    assert target.contents() == jobs.server.contents()


def test_the_policy_decides_and_the_setting_is_the_default(jobs: Jobs) -> None:
    assert jobs.backup(method="Logical").encryption_key_id == "k1"  # setting: on
    jobs.set_policy(False)  # DisableBackupEncryption
    off = jobs.backup(method="Logical")
    assert (off.encryption, off.encryption_key_id, off.wrapped_data_key) == ("{}", "", "")
    assert _manifest(jobs, off).encryption == {}
    jobs.with_options(RunOptions(heartbeat_seconds=0.2, encrypt_backups=False, keyring=K1))
    assert jobs.backup(method="Logical").encryption == "{}"
    jobs.set_policy(True)  # EnableBackupEncryption, setting off
    assert jobs.backup(method="Logical").encryption_key_id == "k1"


def test_incrementals_build_on_encrypted_sets_and_the_chain_restores(
    jobs: Jobs, tmp_path: Path
) -> None:
    full = jobs.backup(method="Physical")
    jobs.server.insert("shop", "orders", [1000, 7, 3.0, "2026-02-01"])
    expected = jobs.server.contents()
    inc = jobs.backup(method="Physical")
    assert inc.kind == "IncrementalBackup" and inc.parent_id == full.id
    assert inc.wrapped_data_key != full.wrapped_data_key  # a data key per set
    *chain, last = jobs.sets(K1).chain(inc.id)
    jobs.rig.engine.restore_physical(last.manifest, last.source, tmp_path / "r", chain)
    assert MemoryServer.load(tmp_path / "r").contents() == expected


def test_rotation_new_sets_use_the_new_key_old_sets_stay_readable(jobs: Jobs) -> None:
    old = jobs.backup(method="Logical")
    rotated = Keyring({**K1.keys, "k2": os.urandom(32)}, "k2")
    jobs.with_options(RunOptions(heartbeat_seconds=0.2, encrypt_backups=True, keyring=rotated))
    new = jobs.backup(method="Logical")
    assert (old.encryption_key_id, new.encryption_key_id) == ("k1", "k2")
    for backup in (old, new):
        stored = jobs.sets(rotated).open(backup.id)
        target = MemoryServer()
        jobs.rig.engine.restore_logical(
            stored.manifest, stored.source, jobs.rig.engine.serve(target)
        )
        assert target.contents() == jobs.server.contents()
    with pytest.raises(SetUnavailable, match=f"backup set {new.id} cannot be decrypted.*'k2'"):
        jobs.sets(K1).open(new.id)
    jobs.set_policy(True, "k1")  # EnableBackupEncryption EncryptionKey=k1 keeps k1
    assert jobs.backup(method="Logical").encryption_key_id == "k1"


def test_a_policy_key_the_settings_lost_fails_the_job_clearly(jobs: Jobs) -> None:
    jobs.set_policy(True, "retired")
    assert "backup encryption key 'retired' is not configured" in jobs.failed_reason(
        method="Logical"
    )
    jobs.with_options(RunOptions(heartbeat_seconds=0.2, encrypt_backups=True))
    jobs.set_policy(None)
    assert "no encryption keys are configured" in jobs.failed_reason(method="Logical")


def test_a_flipped_byte_in_an_object_fails_the_restore_naming_it(jobs: Jobs) -> None:
    jobs.server.put_rows("shop", "orders", [[i, f"item {i}", i * 0.5] for i in range(20_000)])
    backup = jobs.backup(method="Logical", compression="none")
    manifest = _manifest(jobs, backup)
    obj = max(manifest.objects, key=lambda o: o.size)
    key = backup.storage_prefix + obj.name
    data = bytearray(jobs.storage.read_bytes(key))
    data[len(data) // 3] ^= 0x01
    jobs.storage.write_bytes(key, bytes(data))
    stored = jobs.sets(K1).open(backup.id)
    # one chunk: the end of the object (sha256) is reached before its tag is checked
    with pytest.raises((DecryptionFailed, ChecksumMismatch), match=f"object {obj.name} is corrupt"):
        jobs.rig.engine.restore_logical(
            stored.manifest, stored.source, jobs.rig.engine.serve(MemoryServer())
        )


def _rewrite_manifest(jobs: Jobs, backup: BackupSet, manifest: Manifest) -> None:
    """Store ``manifest`` and make the catalog agree with it: damage the checksum
    cannot see (it was done before the checksum was taken)."""
    data = manifest.to_json()
    jobs.storage.write_bytes(backup.storage_prefix + MANIFEST_NAME, data)
    with jobs.rig.catalog.write() as s:
        s.get_one(BackupSet, backup.id).checksum = hashlib.sha256(data).hexdigest()


def test_a_damaged_manifest_or_wrapped_key_fails_clearly(jobs: Jobs) -> None:
    backup = jobs.backup(method="Logical")
    key = backup.storage_prefix + MANIFEST_NAME
    original = jobs.storage.read_bytes(key)
    flipped = bytearray(original)
    flipped[original.index(b"wrapped_key") + 20] ^= 0x01
    jobs.storage.write_bytes(key, bytes(flipped))
    with pytest.raises(SetUnavailable, match="its manifest does not match the catalog"):
        jobs.sets(K1).open(backup.id)
    manifest = Manifest.from_json(original)
    wrapped = bytearray(manifest.encryption["wrapped_key"].encode())
    wrapped[20] = ord("A") if wrapped[20] != ord("A") else ord("B")
    damaged = replace(manifest, encryption={**manifest.encryption, "wrapped_key": wrapped.decode()})
    _rewrite_manifest(jobs, backup, damaged)
    with pytest.raises(SetUnavailable, match="cannot be decrypted: the data key does not unwrap"):
        jobs.sets(K1).open(backup.id)
    _rewrite_manifest(jobs, backup, replace(manifest, encryption={}))  # "not encrypted"
    stored = jobs.sets(K1).open(backup.id)
    with pytest.raises(ChecksumMismatch, match="is corrupt: zstd"):
        jobs.rig.engine.restore_logical(
            stored.manifest, stored.source, jobs.rig.engine.serve(MemoryServer())
        )
