"""Jobs that are still running: concurrent CreateBackup calls, and a service killed in the
middle of a backup. A dedicated service compresses at zstd level 19 on one thread so that
a physical backup of the fixture server takes several seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Key, ServiceProcess, signed_v1, wait_job

SLOW = {"compression_level": 19, "compression_threads": 1, "backup_parallel": 1}


@pytest.fixture
def slow(
    service_maker: Callable[..., ServiceProcess], mariadb: LocalServer
) -> Iterator[tuple[ServiceProcess, Key, str]]:
    svc = service_maker(**SLOW)
    key = svc.add_key("acct1")
    instance_id = svc.register(mariadb, "acct1")
    svc.start()
    yield svc, key, instance_id
    svc.stop()


def job_state(svc: ServiceProcess, key: Key, instance_id: str, job_id: str) -> dict[str, str]:
    resp = signed_v1(
        svc.endpoint,
        key,
        "DescribeBackupTasks",
        {"DBInstanceId": instance_id, "BackupJobId": job_id},
    )
    return dict(resp.json()["Items"]["BackupJob"][0])


def test_fifty_concurrent_create_backup_calls(slow: tuple[ServiceProcess, Key, str]) -> None:
    svc, key, instance_id = slow
    barrier = threading.Barrier(50)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        resp = signed_v1(svc.endpoint, key, "CreateBackup", {"DBInstanceId": instance_id})
        with lock:
            answers.append(resp)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r.json()["BackupJobId"] for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 400 and r.json()["Code"] == "BackupJobExists"]
    assert len(ok) == 1 and len(refused) == 49, [r.text for r in answers]
    state = job_state(svc, key, instance_id, ok[0])
    assert state["BackupStatus"] not in ("Finished", "Failed"), "the job ended inside the race"
    assert wait_job(svc.endpoint, key, instance_id, ok[0])["BackupStatus"] == "Finished"


def test_killed_service_fails_the_job_and_frees_the_instance(
    slow: tuple[ServiceProcess, Key, str],
) -> None:
    svc, key, instance_id = slow
    job_id = signed_v1(svc.endpoint, key, "CreateBackup", {"DBInstanceId": instance_id}).json()[
        "BackupJobId"
    ]
    deadline = time.monotonic() + 60
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        state = job_state(svc, key, instance_id, job_id)
        if state["BackupStatus"] == "Uploading" and int(state["BytesDone"]) > 0:
            break
        time.sleep(0.1)
    assert state["BackupStatus"] == "Uploading", state
    storage = svc.root / "state" / "backups" / instance_id
    assert any(storage.rglob("*.partial")), "the backup should be writing when it is killed"
    svc.stop(kill=True)
    svc.start()
    state = job_state(svc, key, instance_id, job_id)
    assert state["BackupStatus"] == "Failed", state
    assert "stopped" in state["FailedReason"]
    assert not any(storage.rglob("*")), "a failed job leaves no objects behind"
    sets = signed_v1(svc.endpoint, key, "DescribeBackups", {"DBInstanceId": instance_id}).json()
    assert [b["BackupStatus"] for b in sets["Items"]["Backup"]] == ["Failed"]
    again = signed_v1(
        svc.endpoint, key, "CreateBackup", {"DBInstanceId": instance_id, "BackupMethod": "Logical"}
    )
    assert again.status_code == 200, again.text
    assert (
        wait_job(svc.endpoint, key, instance_id, again.json()["BackupJobId"])["BackupStatus"]
        == "Finished"
    )
