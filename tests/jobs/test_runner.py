"""The job runner on the in-memory engine, in memory and in real storage folders,
including storage that fills up or stops accepting writes in the middle of a backup."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

from sqlalchemy import select

from rdsbackup.catalog.models import BackupJob, BackupSet
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service.backups import CreateBackupRequest
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader
from tests.jobs.conftest import Rig, make_rig


def test_finished_job_has_a_complete_verified_set(rig: Rig) -> None:
    job = rig.run(method="Physical")
    assert job.status == "Finished" and job.process == 100 and job.backup_id
    backup = rig.backup_set(job.backup_id)
    data = rig.storage.read_bytes(backup.storage_prefix + MANIFEST_NAME)
    manifest = Manifest.from_json(data)
    assert hashlib.sha256(data).hexdigest() == backup.checksum
    assert manifest.engine == "MariaDB" and manifest.method == "Physical"
    assert manifest.consistent_position and manifest.tool_versions
    SetReader(rig.storage, backup.storage_prefix, manifest).verify_all()
    assert backup.size == sum(o.size for o in manifest.objects) > 0
    assert sorted(o.name for o in backup.objects) == sorted(o.name for o in manifest.objects)


def test_gzip_when_the_user_asks(rig: Rig) -> None:
    job = rig.run(method="Logical", db_names=("shop",), compression="gzip")
    assert job.status == "Finished", job.failed_reason
    backup = rig.backup_set(job.backup_id or 0)
    manifest = Manifest.from_json(rig.storage.read_bytes(backup.storage_prefix + MANIFEST_NAME))
    assert manifest.compression["algorithm"] == "gzip"
    assert manifest.objects and all(o.name.endswith(".gz") for o in manifest.objects)
    reader = SetReader(rig.storage, backup.storage_prefix, manifest)
    (obj,) = manifest.objects
    with reader.open(obj.name) as f:
        data = f.read()
    assert len(data) == obj.raw_size
    assert json.loads(data)["tables"] == rig.server.contents()["shop"]


def test_full_disk_fails_the_job_and_leaves_nothing(tmp_path: Path, small_disk: Path) -> None:
    server = MemoryServer()  # random text: ~1 MiB even once compressed
    server.put_rows("blobs", "b", [[i, os.urandom(4096).hex()] for i in range(256)])
    rig = make_rig(tmp_path, LocalStorage(small_disk), server)
    job = rig.run(method="Physical")
    assert job.status == "Failed"
    assert "No space left on device" in job.failed_reason
    assert list(small_disk.rglob("*.*")) == []
    failed = rig.backup_set(job.backup_id or 0)
    assert (failed.status, failed.is_avail, failed.size) == ("Failed", False, 0)
    assert rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id)) > 0


def test_storage_that_stops_accepting_writes(tmp_path: Path) -> None:
    """The set's folder turns immutable while the first object is written: putting the
    object in place fails (EPERM, even for root)."""
    storage = LocalStorage(tmp_path / "backups")
    rig = make_rig(tmp_path, storage)
    gate = rig.server.block_next_backup()
    job_id = rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id))
    worker = threading.Thread(target=rig.runner.run, args=(job_id,))
    worker.start()
    assert gate.wait_reached(), "the backup never started writing"
    (partial,) = storage.root.rglob("*.partial")
    folder = partial.parent
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        gate.release()
        worker.join(120)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    with rig.catalog.read() as s:
        job = s.get_one(BackupJob, job_id)
        successes = s.scalars(select(BackupSet).where(BackupSet.status == "Success")).all()
    assert job.status == "Failed"
    assert "Operation not permitted" in job.failed_reason
    assert successes == []


def test_status_never_goes_back_to_an_earlier_phase(rig: Rig) -> None:
    """Engines report phases too (MariaDB and the memory engine report Preparing inside
    backup()); once a client has seen Uploading it must never see Preparing again."""
    gate = rig.server.block_next_backup()
    job_id = rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id))
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while True:
            finished = done.is_set()  # read once more after run() returned
            with rig.catalog.read() as s:
                status = s.get_one(BackupJob, job_id).status
            if not seen or seen[-1] != status:
                seen.append(status)
            if finished:
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker = threading.Thread(target=rig.runner.run, args=(job_id,))
    worker.start()
    assert gate.wait_reached()
    deadline = time.monotonic() + 10  # the blocked job shows Uploading, seen by the watcher
    while "Uploading" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.release()
    worker.join(30)
    done.set()
    watcher.join()
    assert "Uploading" in seen and seen[-1] == "Finished", seen
    assert "Preparing" not in seen[seen.index("Uploading") :], seen
