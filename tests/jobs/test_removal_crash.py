"""Crash-safe removal (jobs/removal.py): a retention pass SIGKILLed in a child process
before, during or after deleting a set's objects leaves nothing half deleted on offer (no
DescribeBackups row, no restore, verification, download or incremental built on it), and
the next pass, in a fresh process, finishes the job with no orphaned objects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

import rdsbackup
from rdsbackup.app import Service, build_links, build_service
from rdsbackup.catalog.models import BackupSet
from rdsbackup.config import Settings
from rdsbackup.engines.memory import MemoryEngine
from rdsbackup.instances.servers import free_port
from rdsbackup.jobs.sets import SetStore
from rdsbackup.service import errors
from rdsbackup.service.auth import Principal
from rdsbackup.service.backups import BackupFilter, CreateBackupRequest
from rdsbackup.service.fetch import FetchFailed, fetch_set
from rdsbackup.service.links import set_tag
from rdsbackup.service.payloads import Payloads, SetNotServable
from rdsbackup.service.restores import CloneRequest
from rdsbackup.testing import memory_registry, register
from tests.fixtures.backup_sets import set_ids, stored_sets
from tests.jobs.conftest import shop_server

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sets:
    service: Service
    who: Principal
    instance_id: str
    full: int
    inc: int
    keep: int

    def backup(self, **request: object) -> int:
        svc = self.service
        job_id = svc.backups.create_backup(
            self.who,
            CreateBackupRequest(self.instance_id, **request),  # type: ignore[arg-type]
        )
        assert svc.dispatcher.join(30)
        jobs = svc.backups.describe_jobs(self.who, self.instance_id, job_id=job_id)
        assert jobs[0].status == "Finished", jobs[0].failed_reason
        return jobs[0].backup_id or 0


@pytest.fixture
def sets(tmp_path: Path) -> Iterator[Sets]:
    settings = Settings(state_dir=tmp_path / "state", port=free_port(), heartbeat_seconds=0.2)
    engine = MemoryEngine()
    service = build_service(settings, memory_registry(engine))
    core = service.core
    account_id = core.accounts.ensure_account("a")
    instance_id = register(core.inventory, account_id, engine.serve(shop_server()))
    core.inventory.probe(instance_id)
    made = Sets(service, Principal(account_id, "a", "AK-a"), instance_id, 0, 0, 0)
    made.full = made.backup(method="Physical", backup_type="FullBackup", retention_days=7)
    made.inc = made.backup(method="Physical", backup_type="IncrementalBackup", retention_days=7)
    made.keep = made.backup(method="Logical", retention_days=30)
    try:
        yield made
    finally:
        service.stop()
        core.catalog.dispose()


def _child(sets: Sets, stall: str, signal_file: Path) -> subprocess.Popen[str]:
    core = sets.service.core
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(rdsbackup.__file__).parents[1]), str(ROOT)])
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.jobs.removal_child",
            core.settings.resolved_catalog_url,
            str(core.settings.resolved_storage_dir),
            "8",
            stall,
            str(signal_file),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_at_stall(child: subprocess.Popen[str], signal_file: Path) -> None:
    deadline = time.monotonic() + 60
    while not signal_file.exists():
        if child.poll() is not None:
            raise AssertionError(f"the child ended before its stall: {child.communicate()}")
        assert time.monotonic() < deadline, "the child never reached its stall"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL


def _offered_nowhere(sets: Sets, backup_id: int, tmp_path: Path) -> None:
    svc, who, instance = sets.service, sets.who, sets.instance_id
    with pytest.raises(errors.BackupUnusable):
        svc.restores.verify(who, instance, backup_id)
    with pytest.raises(errors.BackupUnusable):
        svc.restores.clone(who, CloneRequest(instance, backup_id, None, "Postpaid"))
    with pytest.raises(errors.BackupUnusable):
        svc.restores.restore_database(who, instance, backup_id, "shop", None, "shop2")
    with pytest.raises(errors.BackupNotFound):
        svc.backups.delete_backups(who, instance, [backup_id])
    with svc.core.catalog.read() as s:
        checksum = s.get_one(BackupSet, backup_id).checksum
    with pytest.raises(SetNotServable):
        Payloads(svc.core.catalog, svc.core.storage).payload(backup_id, set_tag(checksum), None)
    with pytest.raises(FetchFailed, match="not available"):
        fetch_set(svc.core.catalog, build_links(svc.core), backup_id, tmp_path / "out")


@pytest.mark.parametrize("stall", ["marked", "halfway", "deleted"])
def test_a_removal_killed_midway_offers_nothing_and_the_next_pass_finishes(
    sets: Sets, stall: str, tmp_path: Path
) -> None:
    svc, core = sets.service, sets.service.core
    prefix = f"{sets.instance_id}/"
    inc_keys = [k for k in core.storage.list(prefix) if k.startswith(f"{prefix}{sets.inc}/")]
    child = _child(sets, stall, tmp_path / "stalled")
    _kill_at_stall(child, tmp_path / "stalled")

    # The incremental's objects were being deleted (it goes before the full set it
    # builds on); both sets were marked in one transaction before any object went.
    left = [k for k in core.storage.list(prefix) if k.startswith(f"{prefix}{sets.inc}/")]
    expected_left = {"marked": len(inc_keys), "halfway": len(inc_keys) - 1, "deleted": 0}
    assert len(left) == expected_left[stall]
    assert set_ids(core.catalog) == {sets.full, sets.inc, sets.keep}  # no record dropped yet
    listed = svc.backups.describe_backups(sets.who, sets.instance_id, BackupFilter(), 1, 30)
    assert [b.id for b in listed.items] == [sets.keep]
    for backup_id in (sets.inc, sets.full):
        _offered_nowhere(sets, backup_id, tmp_path)
    with pytest.raises(errors.UnsupportedBackupType):  # no incremental builds on them
        svc.backups.create_backup(
            sets.who,
            CreateBackupRequest(
                sets.instance_id, method="Physical", backup_type="IncrementalBackup"
            ),
        )

    again = _child(sets, "none", tmp_path / "unused")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert json.loads(out) == [sets.inc, sets.full]  # resumed: the incremental first

    assert set_ids(core.catalog) == stored_sets(core.storage, sets.instance_id) == {sets.keep}
    with core.catalog.read() as s:
        marked = s.scalars(select(BackupSet.id).where(BackupSet.deleting_at.is_not(None)))
        assert list(marked) == []
    SetStore(core.catalog, core.storage).open(sets.keep)  # the live set is whole


def test_the_service_finishes_marked_removals_when_it_starts(sets: Sets, tmp_path: Path) -> None:
    core = sets.service.core
    child = _child(sets, "halfway", tmp_path / "stalled")
    _kill_at_stall(child, tmp_path / "stalled")
    sets.service.start()  # as after a crash: removals left marked are finished first
    assert set_ids(core.catalog) == stored_sets(core.storage, sets.instance_id) == {sets.keep}
