"""Metrics and logs of the real ``rdsbackup serve`` over real MariaDB and PostgreSQL
servers: a backup shows on ``/metrics`` (loopback, no token: the default), and the
service's log (its stdout and stderr, shared by every e2e test of the session) holds no
secret while its lines name the RequestId and BackupJobId they belong to."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from alibabacloud_rds20140815 import models
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from rdsbackup.catalog.models import BackupJob, BackupSet, Instance, RestoreTask
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Rds, signed_v1, tea_client, wait_job


def _samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= dict(s.labels).items()
    ]


def test_a_real_backup_on_metrics_and_in_secret_free_logs(
    rds: Rds,
    fresh_instance: Callable[..., str],
    mariadb: LocalServer,
    postgres: LocalServer,
) -> None:
    instance_id = fresh_instance("MariaDB")  # `rdsbackup instance add --password-file`
    client = tea_client(rds.endpoint, rds.key)
    created = client.create_backup(
        models.CreateBackupRequest(dbinstance_id=instance_id, backup_method="Logical")
    )
    request_id = created.body.request_id
    job: dict[str, Any] = wait_job(rds.endpoint, rds.key, instance_id, created.body.backup_job_id)
    assert job["BackupStatus"] == "Finished", (job, rds.service.log_tail())

    listed = signed_v1(
        rds.endpoint,
        rds.key,
        "DescribeBackups",
        {"DBInstanceId": instance_id, "BackupId": job["BackupId"]},
    ).json()["Items"]["Backup"][0]
    url = listed["BackupDownloadURL"]
    signature = parse_qs(urlsplit(url).query)["Signature"][0]
    assert httpx.get(url, timeout=60).status_code == 200

    scrape = httpx.get(f"http://{rds.endpoint}/metrics", timeout=30)
    assert scrape.status_code == 200
    mine = {"instance_id": instance_id, "engine": "MariaDB"}
    catalog = rds.service.catalog()
    try:
        with catalog.read() as s:
            backup = s.get_one(BackupSet, int(job["BackupId"]))
            reasons = [
                *s.scalars(select(BackupJob.failed_reason)),
                *s.scalars(select(BackupSet.failed_reason)),
                *s.scalars(select(RestoreTask.failed_reason)),
                *s.scalars(select(Instance.status_reason)),
            ]
    finally:
        catalog.dispose()
    end = backup.end_time.replace(tzinfo=UTC).timestamp()
    last = "rdsbackup_backup_last_success_timestamp_seconds"
    assert _samples(scrape.text, last, **mine) == [end]
    assert _samples(scrape.text, "rdsbackup_backup_sets", **mine) == [1]
    assert _samples(scrape.text, "rdsbackup_api_requests_total", action="CreateBackup")

    state = rds.service.root / "state"
    secrets = [
        rds.key.secret,
        rds.other_key.secret,
        mariadb.admin_password,
        postgres.admin_password,
        (state / "secret.key").read_text().strip(),
        signature,
        *(line.split(" ", 1)[1] for line in (state / "encryption.keys").read_text().splitlines()),
    ]
    log = rds.service.log_path.read_text(errors="replace")
    for secret in secrets:
        assert secret and secret not in log, f"a secret reached the log: {secret[:4]}..."
        assert not any(secret in r for r in reasons), f"a secret in a reason: {secret[:4]}..."
        assert secret not in scrape.text

    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    call = [e for e in entries if e.get("RequestId") == request_id]
    assert call and call[0]["message"].startswith("CreateBackup Success 200")
    assert call[0]["DBInstanceId"] == instance_id
    run = [e for e in entries if e.get("BackupJobId") == str(job["BackupJobId"])]
    assert any("finished" in e["message"] for e in run), run
    assert all(e["DBInstanceId"] == instance_id and "RequestId" not in e for e in run)
