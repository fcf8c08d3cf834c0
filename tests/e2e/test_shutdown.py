"""Stopping the service with SIGTERM or SIGINT (systemd, `timeout`, Ctrl-C): it exits 0
within a bound, fails the job it was running ("service stopped"), and leaves no process
behind: no tool, and no local database server."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from rdsbackup.catalog.models import Instance
from rdsbackup.instances.servers_os import process_alive
from tests.fixtures.service import Key, ServiceProcess, signed_v1, wait_job

BOUND = 30.0
SLOW = {"compression_level": 19, "compression_threads": 1, "backup_parallel": 1}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def descendants(root: int) -> set[int]:
    """Every live process whose parent chain leads to ``root``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    for pid in parents:
        p = pid
        while p in parents and p > 1:
            p = parents[p]
            if p == root:
                found.add(pid)
                break
    return found


def in_session(sid: int) -> set[int]:
    """Live processes of session ``sid`` (the service leads its own, as the fixture starts it)."""
    return {
        int(e)
        for e in os.listdir("/proc")
        if e.isdigit() and (f := _stat(int(e))) is not None and int(f[4]) == sid and f[0] != "Z"
    }


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def local_instance(svc: ServiceProcess, engine: str) -> tuple[str, int, int]:
    """Create a local instance; returns its id, its server's port and pid."""
    instance_id = str(
        svc.cli_json(
            "instance", "create", "--engine", engine, "--account", "team", "--sample-data"
        )["DBInstanceId"]
    )
    with svc.catalog().read() as s:
        port = s.get_one(Instance, instance_id).port
    return instance_id, port, server_pid(svc, instance_id)


def server_pid(svc: ServiceProcess, instance_id: str) -> int:
    pid_file = next((svc.root / "state" / "instances" / instance_id).rglob("*.pid"))
    return int(pid_file.read_text().split()[0])


def stop_with(svc: ServiceProcess, sig: signal.Signals) -> tuple[int, float, set[int]]:
    """Send ``sig``; returns the exit code, the seconds it took, and the processes that
    descended from the service just before."""
    assert svc.proc is not None
    before = descendants(svc.proc.pid)
    started = time.monotonic()
    svc.proc.send_signal(sig)
    code = svc.proc.wait(BOUND + 10)
    return code, time.monotonic() - started, before


def job_state(svc: ServiceProcess, key: Key, instance_id: str, job_id: str) -> dict[str, str]:
    resp = signed_v1(
        svc.endpoint,
        key,
        "DescribeBackupTasks",
        {"DBInstanceId": instance_id, "BackupJobId": job_id},
    )
    return dict(resp.json()["Items"]["BackupJob"][0])


def assert_nothing_left(svc: ServiceProcess, before: set[int], server: int, port: int) -> None:
    assert svc.proc is not None
    left = {p for p in before | in_session(svc.proc.pid) if process_alive(p)}
    assert not left, f"processes left behind: {left}\n{svc.log_tail()}"
    assert not process_alive(server), svc.log_tail()
    assert not accepts(port), f"port {port} still accepts connections"


def test_sigterm_fails_the_running_job_stops_the_server_and_exits_0(
    service_maker: Callable[..., ServiceProcess],
) -> None:
    svc = service_maker(**SLOW)
    key = svc.add_key("team")
    instance_id, port, server = local_instance(svc, "MariaDB")
    svc.start(command=("serve",))
    job_id = signed_v1(
        svc.endpoint, key, "CreateBackup", {"DBInstanceId": instance_id, "BackupMethod": "Physical"}
    ).json()["BackupJobId"]
    deadline = time.monotonic() + 60
    assert svc.proc is not None
    while job_state(svc, key, instance_id, job_id)["BackupStatus"] != "Uploading" or not (
        descendants(svc.proc.pid)  # mariadb-backup streaming
    ):
        assert time.monotonic() < deadline, svc.log_tail()
        time.sleep(0.05)
    code, seconds, before = stop_with(svc, signal.SIGTERM)
    assert code == 0, svc.log_tail()
    assert seconds < BOUND
    assert before, f"no backup tool was running\n{svc.log_tail()}"
    assert_nothing_left(svc, before, server, port)
    log = svc.log_tail(20000)
    for line in ("SIGTERM received: stopping", "service stopped before this work ended"):
        assert line in log
    assert f"stopping the MariaDB server of {instance_id}" in log

    svc.start(command=("serve",))  # the server comes back, the job stays failed
    job = wait_job(svc.endpoint, key, instance_id, job_id, timeout=5)
    assert job["BackupStatus"] == "Failed"
    assert "service stopped" in job["FailedReason"]
    sets = signed_v1(svc.endpoint, key, "DescribeBackups", {"DBInstanceId": instance_id}).json()
    statuses = [b["BackupStatus"] for b in sets["Items"]["Backup"]]
    assert statuses == ["Failed"], sets
    assert accepts(port)
    svc.stop()  # SIGINT
    assert svc.proc is not None and svc.proc.returncode == 0


def test_sigint_stops_a_postgresql_server(service_maker: Callable[..., ServiceProcess]) -> None:
    svc = service_maker()
    svc.add_key("team")
    _, port, server = local_instance(svc, "PostgreSQL")
    svc.start(command=("serve",))
    assert accepts(port)
    code, seconds, before = stop_with(svc, signal.SIGINT)
    assert code == 0, svc.log_tail()
    assert seconds < BOUND
    assert_nothing_left(svc, before, server, port)
    assert "stopping the PostgreSQL server" in svc.log_tail()


def test_keep_local_servers_leaves_the_server_running(
    service_maker: Callable[..., ServiceProcess],
) -> None:
    svc = service_maker()
    svc.add_key("team")
    instance_id, port, server = local_instance(svc, "MariaDB")
    svc.start()  # --keep-local-servers
    code, _, _ = stop_with(svc, signal.SIGTERM)
    assert code == 0, svc.log_tail()
    assert process_alive(server) and accepts(port)
    svc.cli("instance", "stop", instance_id)
    assert not process_alive(server)


def test_demo_stops_its_servers_on_sigterm(service_maker: Callable[..., ServiceProcess]) -> None:
    svc = service_maker()
    svc.start(120, command=("demo",))
    with svc.catalog().read() as s:
        ports = [i.port for i in s.query(Instance)]
    assert len(ports) == 2 and all(accepts(p) for p in ports)
    code, seconds, before = stop_with(svc, signal.SIGTERM)
    assert code == 0, svc.log_tail()
    assert seconds < BOUND
    assert svc.proc is not None
    assert not {p for p in before | in_session(svc.proc.pid) if process_alive(p)}
    assert not any(accepts(p) for p in ports)
