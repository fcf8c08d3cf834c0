"""The S3 driver against a real S3 server (moto_server): multipart streaming, aborts,
byte ranges, prefixes, addressing, and a backup stored there and restored."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob
from rdsbackup.config import Settings
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.jobs.sets import SetStore
from rdsbackup.service.backups import CreateBackupRequest
from rdsbackup.storage.base import ObjectNotFound, StorageError
from rdsbackup.storage.s3 import MIN_PART, PARTS_PER_STEP, S3Location, S3Storage
from rdsbackup.testing import memory_rig
from tests.fixtures.s3 import S3Server
from tests.jobs.conftest import shop_server

MiB = 1024 * 1024


def storage(
    server: S3Server,
    bucket: str,
    prefix: str = "p/q",
    *,
    max_concurrency: int = 4,
    parts_per_step: int | None = PARTS_PER_STEP,
) -> S3Storage:
    """Parts of S3's smallest size, so a few MiB make a multipart upload."""
    return S3Storage(
        server.client(),
        S3Location(bucket, prefix),
        part_size=MIN_PART,
        max_concurrency=max_concurrency,
        parts_per_step=parts_per_step,
    )


def test_a_large_object_goes_up_in_parts_and_reads_back_whole_and_by_range(
    s3_server: S3Server, s3_bucket: str
) -> None:
    s3 = storage(s3_server, s3_bucket, max_concurrency=2)
    data = os.urandom(12 * MiB + 123)
    with s3.writer("i/1/base.tar.zst") as w:
        for at in range(0, len(data), 1000_003):  # writes that do not line up with parts
            w.write(data[at : at + 1000_003])
    head = s3.client.head_object(Bucket=s3_bucket, Key="p/q/i/1/base.tar.zst")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB: three parts
    assert s3.read_bytes("i/1/base.tar.zst") == data
    with s3.reader("i/1/base.tar.zst") as f:
        f.seek(7 * MiB + 5)
        assert f.read(100) == data[7 * MiB + 5 : 7 * MiB + 105]
        f.seek(10)
        assert f.read(10) == data[10:20]


def test_parts_grow_so_a_stream_of_unknown_size_fits_in_10000_parts(
    s3_server: S3Server, s3_bucket: str
) -> None:
    s3 = storage(s3_server, s3_bucket, parts_per_step=2)  # 5, 5, 10, 10, 20 MiB ...
    assert [s3.part_size_of(n) // MiB for n in range(1, 8)] == [5, 5, 10, 10, 20, 20, 40]
    data = os.urandom(MiB) * 51  # 5+5+10+10+20 = 50 MiB, then 1 MiB: six parts
    with s3.writer("i/1/grown") as w:
        for at in range(0, len(data), 3 * MiB + 7):
            w.write(data[at : at + 3 * MiB + 7])
    head = s3.client.head_object(Bucket=s3_bucket, Key="p/q/i/1/grown")
    assert head["ETag"].strip('"').endswith("-6"), head["ETag"]
    assert s3.read_bytes("i/1/grown") == data
    fixed = storage(s3_server, s3_bucket, parts_per_step=None)
    assert {fixed.part_size_of(n) for n in (1, 1000, 10_000)} == {MIN_PART}
    assert storage(s3_server, s3_bucket).part_size_of(10_000) == 5 * MiB << 9


def test_a_failed_upload_is_aborted_and_leaves_no_object_and_no_parts(
    s3_server: S3Server, s3_bucket: str
) -> None:
    s3 = storage(s3_server, s3_bucket)
    with pytest.raises(RuntimeError), s3.writer("i/1/big") as w:
        w.write(os.urandom(11 * MiB))
        raise RuntimeError("the tool died")
    assert list(s3.list("i/")) == []
    uploads = s3.client.list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []
    with pytest.raises(ObjectNotFound):
        s3.size("i/1/big")


def test_keys_stay_under_the_prefix_and_delete_goes_in_batches(
    s3_server: S3Server, s3_bucket: str
) -> None:
    s3, other = storage(s3_server, s3_bucket, "a"), storage(s3_server, s3_bucket, "b")
    other.write_bytes("i/1/x", b"kept")
    for n in range(1005):
        s3.write_bytes(f"i/1/{n:04}", b"")
    assert len(list(s3.list("i/1/"))) == 1005
    assert s3.delete_prefix("i/1/") == 1005
    assert list(s3.list("i/")) == []
    assert other.read_bytes("i/1/x") == b"kept"


def test_an_unreachable_endpoint_is_a_storage_error(s3_server: S3Server) -> None:
    s3 = storage(s3_server, "no-such-bucket")
    with pytest.raises(StorageError):
        s3.write_bytes("i/1/x", b"x")


def test_settings_pick_the_bucket_and_the_addressing_style(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    from rdsbackup.app import build_storage

    settings = Settings(
        state_dir=tmp_path,
        storage_url=f"s3://{s3_bucket}/backups",
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key_id="k",
        s3_secret_access_key="s",
        s3_addressing_style="path",
    )
    built = build_storage(settings)
    assert isinstance(built, S3Storage)
    built.write_bytes("i/1/x", b"hello")
    got = built.client.get_object(Bucket=s3_bucket, Key="backups/i/1/x")["Body"].read()
    assert got == b"hello"
    with pytest.raises(ValueError, match="s3://"):
        S3Location.parse("https://bucket/x")


def test_a_backup_stored_in_s3_restores_to_the_data_it_was_taken_from(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    s3 = storage(s3_server, s3_bucket, "sets")
    rig = memory_rig(Catalog(f"sqlite:///{tmp_path / 'catalog.db'}"), s3, threaded=True)
    try:
        server: MemoryServer = shop_server()
        instance_id, who = rig.add_instance(server)
        expected = server.contents()
        job_id = rig.service.create_backup(who, CreateBackupRequest(instance_id, method="Physical"))
        deadline = time.monotonic() + 30
        while True:
            with rig.catalog.read() as s:
                job = s.scalars(select(BackupJob).where(BackupJob.id == job_id)).one()
            if job.status in ("Finished", "Failed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert job.status == "Finished", job.failed_reason
        keys = s3.client.list_objects_v2(Bucket=s3_bucket, Prefix="sets/")["Contents"]
        assert any(k["Key"].endswith("manifest.json") for k in keys)
        (stored,) = SetStore(rig.catalog, s3).chain(job.backup_id or 0)
        rig.engine.restore_physical(stored.manifest, stored.source, tmp_path / "restored", [])
        assert MemoryServer.load(tmp_path / "restored").contents() == expected
    finally:
        rig.close()
        rig.catalog.dispose()
