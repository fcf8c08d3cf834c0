"""The job runner against a real MariaDB and real storage folders, including storage
that fills up or stops accepting writes in the middle of a backup."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

from sqlalchemy import select

from rdsbackup.catalog.models import BackupJob, BackupSet
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import MANIFEST_NAME, Manifest
from rdsbackup.service.backups import CreateBackupRequest
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
    text = b""
    for obj in manifest.objects:
        with reader.open(obj.name) as f:
            data = f.read()
        assert len(data) == obj.raw_size
        text += data
    assert b"CREATE TABLE" in text and b"INSERT INTO" in text


def test_full_disk_fails_the_job_and_leaves_nothing(
    tmp_path: Path, mariadb: LocalServer, small_disk: Path
) -> None:
    rig = make_rig(tmp_path, small_disk, mariadb)
    job = rig.run(method="Physical")
    assert job.status == "Failed"
    assert "No space left on device" in job.failed_reason
    assert list(small_disk.rglob("*.*")) == []
    failed = rig.backup_set(job.backup_id or 0)
    assert (failed.status, failed.is_avail, failed.size) == ("Failed", False, 0)
    assert rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id)) > 0


def test_storage_that_stops_accepting_writes(rig: Rig) -> None:
    """The set's folder turns immutable while the first object is written: creating the
    next object fails (EPERM, even for root)."""
    job_id = rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id))
    worker = threading.Thread(target=rig.runner.run, args=(job_id,))
    worker.start()
    deadline = time.monotonic() + 60
    partials: list[Path] = []
    while time.monotonic() < deadline and not partials:
        partials = list(rig.storage.root.rglob("*.partial"))
        time.sleep(0.005)
    assert partials, "the backup never started writing"
    folder = partials[0].parent
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
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
    """Engines report phases too (MariaDB reports Preparing inside backup()); once a
    client has seen Uploading it must never see Preparing again."""
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
    rig.runner.run(job_id)
    done.set()
    watcher.join()
    assert "Uploading" in seen and seen[-1] == "Finished", seen
    assert "Preparing" not in seen[seen.index("Uploading") :], seen
