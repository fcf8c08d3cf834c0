"""Celery workers (``dispatcher = "celery"``): the API process and workers as separate
processes, Redis (started here on a free port) as the broker, a shared catalog and
storage. Jobs go to their instance's host queue; a worker killed with SIGKILL mid-backup
leaves its job Failed with a reason within the lease, and another queue's worker is
unaffected. Backups compress at zstd level 19 on one thread, so they take seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from rdsbackup.catalog.models import BackupJob
from rdsbackup.instances.servers import LocalServer, free_port
from tests.fixtures.service import RDSBACKUP, ServiceProcess, tea_client, wait_job

SLOW = {"compression_level": 19, "compression_threads": 1, "backup_parallel": 1}


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while (
        subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
        ).stdout.strip()
        != "PONG"
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


class Workers:
    def __init__(self, svc: ServiceProcess) -> None:
        self.svc = svc
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, queue: str) -> None:
        log = open(self.svc.root / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen(
            [RDSBACKUP, "worker", "--queue", queue, "--concurrency", "1"],
            env={**self.svc.env(), "RDSBACKUP_NODE_ID": name},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def lease_owner(svc: ServiceProcess, job_id: str) -> str | None:
    catalog = svc.catalog()
    try:
        with catalog.read() as s:
            return s.scalars(select(BackupJob.lease_owner).where(BackupJob.id == int(job_id))).one()
    finally:
        catalog.dispose()


def wait_for(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


@pytest.mark.slow
def test_jobs_run_on_their_host_queue_and_a_killed_worker_fails_only_its_job(
    service_maker: Callable[..., ServiceProcess],
    redis_url: str,
    mariadb: LocalServer,
    postgres: LocalServer,
) -> None:
    from alibabacloud_rds20140815 import models

    svc = service_maker(dispatcher="celery", broker_url=redis_url, **SLOW)
    key = svc.add_key("acct1")
    on_a = svc.register(mariadb, "acct1", "--host-queue", "host-a")
    on_b = svc.register(postgres, "acct1", "--host-queue", "host-b")
    svc.start()
    workers = Workers(svc)
    client = tea_client(svc.endpoint, key)

    def create(instance_id: str) -> str:
        body = client.create_backup(models.CreateBackupRequest(dbinstance_id=instance_id)).body
        return str(body.backup_job_id)

    try:
        workers.start("worker-a", "host-a")
        # host-b has no worker yet: its job waits in its queue, untouched by worker-a.
        job_b = create(on_b)
        job_a = create(on_a)
        wait_for(
            lambda: (lease_owner(svc, job_a) or "").startswith("worker-a:"),
            60,
            "worker-a never claimed the job of its queue",
        )
        assert lease_owner(svc, job_b) is None
        workers.kill("worker-a")
        killed = time.monotonic()
        failed = wait_job(svc.endpoint, key, on_a, job_a, timeout=60)
        assert failed["BackupStatus"] == "Failed"
        assert failed["FailedReason"], failed
        assert time.monotonic() - killed < 6 + 10  # the lease (6 s) and a reaper pass
        assert lease_owner(svc, job_b) is None  # still queued for host-b

        workers.start("worker-b", "host-b")
        done = wait_job(svc.endpoint, key, on_b, job_b, timeout=120)
        assert done["BackupStatus"] == "Finished", done
        backups = client.describe_backups(
            models.DescribeBackupsRequest(dbinstance_id=on_b)
        ).body.items.backup
        assert [b.backup_status for b in backups] == ["Success"]

        workers.start("worker-a2", "host-a")  # a replacement worker takes host-a's next job
        again = create(on_a)
        assert wait_job(svc.endpoint, key, on_a, again, timeout=120)["BackupStatus"] == "Finished"
    finally:
        workers.stop_all()
        svc.stop()
