"""A stopping service: the job it runs fails with "service stopped" once its tool is
killed, leaves no objects and no Success set, and a job it can no longer end is failed
for it, after which its worker cannot finish it."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from sqlalchemy import select

from rdsbackup.catalog.models import BackupJob, BackupSet
from rdsbackup.jobs.janitor import Janitor
from rdsbackup.jobs.leases import STOPPED
from rdsbackup.processes import kill_tool_groups, tool_groups
from rdsbackup.service.backups import CreateBackupRequest
from tests.jobs.conftest import MariaDBRig, Rig


def job(rig: Rig | MariaDBRig, job_id: int) -> BackupJob:
    with rig.catalog.read() as s:
        return s.get_one(BackupJob, job_id)


def sets_of(rig: Rig | MariaDBRig, job_id: int) -> list[str]:
    with rig.catalog.read() as s:
        return list(s.scalars(select(BackupSet.status).where(BackupSet.job_id == job_id)))


def test_a_job_whose_tool_is_killed_at_stop_fails_with_service_stopped(
    mariadb_rig: MariaDBRig,
) -> None:
    rig = mariadb_rig
    rig.runner.options = replace(
        rig.runner.options, compression_level=19, compression_threads=1, parallel=1
    )
    job_id = rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id, "Physical"))
    worker = threading.Thread(target=rig.runner.run, args=(job_id,))
    worker.start()
    deadline = time.monotonic() + 60
    while job(rig, job_id).status != "Uploading" or not tool_groups():
        assert time.monotonic() < deadline and worker.is_alive(), job(rig, job_id).failed_reason
        time.sleep(0.05)
    rig.runner.leases.stopping.set()
    assert kill_tool_groups()
    worker.join(30)
    ended = job(rig, job_id)
    assert (ended.status, ended.failed_reason) == ("Failed", STOPPED)
    assert sets_of(rig, job_id) == ["Failed"]
    prefix = rig.storage.root / rig.instance_id / str(job_id)
    assert not prefix.exists() or not any(prefix.iterdir())


def test_work_still_held_at_stop_is_failed_and_cannot_finish(rig: Rig) -> None:
    leases = rig.runner.leases
    job_id = rig.service.create_backup(rig.who, CreateBackupRequest(rig.instance_id, "Logical"))
    assert leases.claim(job_id)
    janitor = Janitor(rig.catalog, leases, rig.storage)
    assert janitor.fail_running() == [job_id]
    ended = job(rig, job_id)
    assert (ended.status, ended.failed_reason, ended.lease_owner) == ("Failed", STOPPED, None)
    assert sets_of(rig, job_id) == ["Failed"]
    assert not leases.renew(job_id, status="Uploading")  # the worker's lease is gone
    assert janitor.fail_running() == []
