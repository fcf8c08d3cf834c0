"""Local instances provisioned by `rdsbackup instance create`: supervised, restarted when
their server dies, backed up like any other."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

from rdsbackup.instances.servers_os import process_alive
from tests.fixtures.service import Key, ServiceProcess, signed_v1, wait_job


def status(svc: ServiceProcess, key: Key, instance_id: str) -> str:
    resp = signed_v1(
        svc.endpoint,
        key,
        "DescribeDBInstanceAttribute",
        {"DBInstanceId": instance_id},
    )
    return str(resp.json()["Items"]["DBInstanceAttribute"][0]["DBInstanceStatus"])


def test_a_dead_local_server_is_restarted(service_maker: Callable[..., ServiceProcess]) -> None:
    svc = service_maker()
    key = svc.add_key("team")
    created = svc.cli_json(
        "instance", "create", "--engine", "MariaDB", "--account", "team", "--sample-data"
    )
    instance_id = str(created["DBInstanceId"])
    assert instance_id.startswith("rm-")
    svc.start()
    assert status(svc, key, instance_id) == "Running"
    pid_file = next((svc.root / "state" / "instances" / instance_id).rglob("*.pid"))
    killed = int(pid_file.read_text().split()[0])
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # Rebooting lasts as long as a start: ~0.2 s
        current = pid_file.read_text().split()[0] if pid_file.exists() else ""
        if current and int(current) != killed and status(svc, key, instance_id) == "Running":
            break
        time.sleep(0.2)
    assert status(svc, key, instance_id) == "Running"
    restarts = re.findall(rf"instance {instance_id}: \w+ -> Rebooting", svc.log_tail(50000))
    assert restarts, svc.log_tail()
    job = signed_v1(
        svc.endpoint, key, "CreateBackup", {"DBInstanceId": instance_id, "BackupMethod": "Logical"}
    ).json()["BackupJobId"]
    assert wait_job(svc.endpoint, key, instance_id, job)["BackupStatus"] == "Finished"
    restarted = int(pid_file.read_text().split()[0])
    assert process_alive(restarted)
    svc.stop()
    svc.cli("instance", "stop", instance_id)
    assert not process_alive(restarted)
