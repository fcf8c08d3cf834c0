"""An automated backup of a real MariaDB server, started by the scheduler of a served
service whose clock the test sets inside the instance's backup window, seen through
the official SDK as Alibaba labels automated work."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rdsbackup.app import Service, build_service
from rdsbackup.catalog.models import BackupSet, policy_for
from rdsbackup.cli import app
from rdsbackup.clock import ManualClock
from rdsbackup.config import Settings
from rdsbackup.instances.inventory import Registration
from rdsbackup.instances.servers import LocalServer, free_port
from rdsbackup.schedule import spread_offset
from rdsbackup.service.scheduler import decisions
from rdsbackup.testing import serving
from rdsbackup.timeutil import utcnow
from tests.fixtures.service import Key, tea_client

EVERY_DAY = "Monday,Tuesday,Wednesday,Thursday,Friday,Saturday,Sunday"


@pytest.fixture
def scheduled(service_home: Path) -> Iterator[tuple[Service, ManualClock]]:
    root = service_home / uuid.uuid4().hex[:8]
    root.mkdir()
    root.chmod(0o711)
    settings = Settings(
        state_dir=root / "state",
        port=free_port(),
        heartbeat_seconds=0.5,
        job_lease_seconds=6,
        probe_interval_seconds=2,
        compression_threads=2,
        scheduler_enabled=True,
        scheduler_interval_seconds=0.3,
    )
    clock = ManualClock(datetime(2026, 3, 2))  # set inside the window below
    service = build_service(settings, clock=clock)
    yield service, clock
    service.stop()
    service.core.catalog.dispose()


def test_the_scheduler_backs_up_a_real_server_as_an_automated_job(
    scheduled: tuple[Service, ManualClock], mariadb: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alibabacloud_rds20140815 import models

    service, clock = scheduled
    key = Key(*service.core.accounts.create_key("acct1"))
    instance_id = _register(service, mariadb, backup_retention_period=9)
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    due = today + timedelta(hours=4) + spread_offset(instance_id)
    clock.set(due + timedelta(seconds=30))  # inside the window, just after the slot
    assert service.scheduler is not None

    service.start()
    with serving(service) as endpoint:
        client = tea_client(endpoint, key)
        job_id = _wait_started(service, instance_id)

        seen_running = False
        job: Any = None
        for _ in range(900):
            running = client.describe_backup_tasks(
                models.DescribeBackupTasksRequest(
                    dbinstance_id=instance_id, backup_mode="Automated"
                )
            ).body.items.backup_job
            seen_running |= any(str(j.backup_job_id) == str(job_id) for j in running)
            job = client.describe_backup_tasks(
                models.DescribeBackupTasksRequest(dbinstance_id=instance_id, backup_job_id=job_id)
            ).body.items.backup_job[0]
            assert (job.job_mode, job.task_action) == ("Automated", "NormalBackupTask")
            if job.backup_status in ("Finished", "Failed"):
                break
            time.sleep(0.2)
        assert job.backup_status == "Finished"
        assert seen_running  # listed among the unfinished Automated tasks while it ran

        automated = client.describe_backups(
            models.DescribeBackupsRequest(dbinstance_id=instance_id, backup_mode="Automated")
        ).body
        assert automated.total_record_count == "1"
        item = automated.items.backup[0]
        assert (item.backup_mode, item.backup_initiator) == ("Automated", "System")
        assert (item.backup_status, item.backup_method) == ("Success", "Physical")
        assert item.backup_type == "FullBackup" and item.backup_size > 0
        assert str(item.backup_id) == str(job.backup_id)
        manual = client.describe_backups(
            models.DescribeBackupsRequest(dbinstance_id=instance_id, backup_mode="Manual")
        ).body
        assert manual.total_record_count == "0" and manual.items.backup == []

        # The retention is the policy's; the window does not fire a second time.
        start = datetime.strptime(item.backup_end_time, "%Y-%m-%dT%H:%M:%SZ")
        expires = datetime.strptime(item.expect_expire_time, "%Y-%m-%dT%H:%M:%SZ")
        assert timedelta(days=9) - timedelta(minutes=1) <= expires - start <= timedelta(days=9)
        clock.set(due + timedelta(minutes=10))
        time.sleep(1.5)
        decisions = service.scheduler.decisions(instance_id)
        assert [(d.status, d.job_id) for d in decisions] == [("Started", int(job_id))]

    # The operator's view of it: `rdsbackup schedule list`.
    config = service.core.settings.state_dir.parent / "rdsbackup.toml"
    config.write_text(f'state_dir = "{service.core.settings.state_dir}"\n')
    monkeypatch.setenv("RDSBACKUP_CONFIG", str(config))  # load_settings sets it: restored after
    listed = CliRunner().invoke(
        app, ["schedule", "list", "--json", "--config", str(config), "--instance", instance_id]
    )
    assert listed.exit_code == 0, listed.output
    [row] = [json.loads(line) for line in listed.output.splitlines()]
    assert row == {
        "DBInstanceId": instance_id,
        "Slot": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Deadline": (today + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "BackupType": "FullBackup",
        "Status": "Started",
        "CatchUp": False,
        "Reason": "",
        "BackupJobId": str(job_id),
        "DecidedAt": row["DecidedAt"],
    }


def _wait_started(service: Service, instance_id: str) -> int:
    assert service.scheduler is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for decision in service.scheduler.decisions(instance_id):
            if decision.status == "Pending":  # being started this very moment
                break
            assert decision.status == "Started", decision
            assert decision.job_id is not None
            return decision.job_id
        time.sleep(0.1)
    raise AssertionError("the scheduler started nothing inside the window")


def test_incrementals_between_fulls_where_the_engine_builds_them(
    scheduled: tuple[Service, ManualClock], mariadb: LocalServer, postgres: LocalServer
) -> None:
    """An hourly incremental policy on both engines: MariaDB's mariadb-backup builds the
    incremental on the automated full; PostgreSQL's base backups have no incremental
    form, so that slot is skipped with the engine's reason (no full instead)."""
    from alibabacloud_rds20140815 import models

    service, clock = scheduled
    key = Key(*service.core.accounts.create_key("acct1"))
    policy = {"enable_increment_data_backup": True, "inc_backup_interval": 60}
    maria, pg = _register(service, mariadb, **policy), _register(service, postgres, **policy)
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    last = today + timedelta(hours=4) + max(spread_offset(maria), spread_offset(pg))
    clock.set(last + timedelta(seconds=30))  # both windows' fulls are due
    service.start()
    with serving(service) as endpoint:
        client = tea_client(endpoint, key)
        fulls = {i: _wait_done(client, i, _wait_decided(service, i, 1)[-1]) for i in (maria, pg)}
        assert {j.backup_status for j in fulls.values()} == {"Finished"}

        clock.set(last + timedelta(hours=1, seconds=30))  # the next hour's slots
        inc = _wait_done(client, maria, _wait_decided(service, maria, 2)[-1])
        assert inc.backup_status == "Finished"
        sets = client.describe_backups(
            models.DescribeBackupsRequest(
                dbinstance_id=maria, backup_mode="Automated", backup_type="IncrementalBackup"
            )
        ).body.items.backup
        assert [(b.backup_id, b.backup_initiator) for b in sets] == [(inc.backup_id, "System")]
        with service.core.catalog.read() as s:
            parent = s.get_one(BackupSet, int(inc.backup_id)).parent_id
        assert parent == int(fulls[maria].backup_id)

        _wait_decided(service, pg, 2)
        [full, refused] = decisions(service.core.catalog, pg)
        assert (full.status, full.kind) == ("Started", "FullBackup")
        assert refused.status == "Skipped" and refused.job_id is None
        assert "PostgreSQL 15 base backups have no incremental form" in refused.reason


def _register(service: Service, server: LocalServer, **policy_values: object) -> str:
    """Register ``server`` as a Running instance of acct1 with an every-day policy."""
    core = service.core
    instance_id = core.inventory.register(
        Registration(
            account_id=core.accounts.ensure_account("acct1"),
            engine=server.engine,
            host="127.0.0.1",
            port=server.port,
            admin_user=server.admin_user,
            admin_password=server.admin_password,
            data_dir=server.data_dir,
            os_user=server.os_user,
        ),
        status="Running",
    )
    core.inventory.probe(instance_id)
    with core.catalog.write() as s:
        policy = policy_for(s, instance_id)
        policy.preferred_backup_time = "04:00Z-05:00Z"
        policy.preferred_backup_period = EVERY_DAY
        for name, value in policy_values.items():
            setattr(policy, name, value)
        s.add(policy)
    return instance_id


def _wait_decided(service: Service, instance_id: str, count: int) -> list[int]:
    """Wait for ``count`` decided slots (none Pending); the job ids among them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = decisions(service.core.catalog, instance_id)
        if len(found) >= count and all(d.status != "Pending" for d in found):
            return [d.job_id for d in found if d.job_id is not None]
        time.sleep(0.1)
    raise AssertionError(f"the scheduler decided {found} for {instance_id}")


def _wait_done(client: Any, instance_id: str, job_id: int) -> Any:
    from alibabacloud_rds20140815 import models

    for _ in range(900):
        job = client.describe_backup_tasks(
            models.DescribeBackupTasksRequest(dbinstance_id=instance_id, backup_job_id=job_id)
        ).body.items.backup_job[0]
        if job.backup_status in ("Finished", "Failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")
