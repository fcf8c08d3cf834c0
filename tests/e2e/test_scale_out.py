"""The scale-out set-up of docs/multinode.md end to end, every part real and separate: the
API process and a Celery worker process (``dispatcher = "celery"``, Redis started here),
a PostgreSQL catalog, S3 storage (moto_server). CreateBackup through the official SDK
runs on the worker, its objects land in the bucket, and CloneDBInstance (run by the
worker too) restores a copy equal to the source."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from rdsbackup.engines.base import ServerAccess
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from tests.e2e.test_multinode import catalog_url  # noqa: F401 - a fixture
from tests.e2e.test_workers import Workers, redis_url  # noqa: F401 - a fixture
from tests.fixtures.dataset import fingerprint
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.fixtures.servers import ServerFactory
from tests.fixtures.service import ServiceProcess, signed_v1, tea_client, wait_job

SAMPLE = ("shop", "analytics")


def _jobs_logged(log: Path) -> set[str]:
    """BackupJobIds of the JSON log lines of a process (a job's run logs under its id)."""
    found = set()
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("BackupJobId"):
                found.add(str(record["BackupJobId"]))
    return found


def _instance(svc: ServiceProcess, key: Any, instance_id: str) -> dict[str, Any]:
    resp = signed_v1(
        svc.endpoint, key, "DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}
    )
    return dict(resp.json()["Items"]["DBInstanceAttribute"][0])


@pytest.mark.slow
def test_backup_on_a_worker_into_s3_with_a_postgres_catalog_then_clone(
    service_maker: Callable[..., ServiceProcess],
    server_factory: ServerFactory,
    redis_url: str,  # noqa: F811
    catalog_url: str,  # noqa: F811
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    from alibabacloud_rds20140815 import models

    source: LocalServer = server_factory("MariaDB")
    source.start()
    load_sample("MariaDB", source.access(), rows=300)
    svc = service_maker(
        dispatcher="celery",
        broker_url=redis_url,
        catalog_url=catalog_url,
        secret_key=Fernet.generate_key().decode(),
        storage_url=f"s3://{s3_bucket}/sets",
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_addressing_style="path",
    )
    key = svc.add_key("acct1")
    instance_id = svc.register(source, "acct1", "--host-queue", "host-a")
    svc.start()
    workers = Workers(svc)
    client = tea_client(svc.endpoint, key)
    try:
        workers.start("worker-a", "host-a")
        body = client.create_backup(
            models.CreateBackupRequest(dbinstance_id=instance_id, backup_method="Physical")
        ).body
        job_id = str(body.backup_job_id)
        done = wait_job(svc.endpoint, key, instance_id, job_id, timeout=180)
        assert done["BackupStatus"] == "Finished", done
        assert job_id in _jobs_logged(svc.root / "worker-a.log")  # the worker ran it
        assert job_id not in _jobs_logged(svc.log_path)  # the API process did not

        listed = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="sets/")
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert any(
            k.startswith(f"sets/{instance_id}/") and k.endswith("manifest.json") for k in keys
        )
        assert len(keys) >= 2, keys  # the manifest and the data

        clone_id = client.clone_dbinstance(
            models.CloneDBInstanceRequest(
                dbinstance_id=instance_id, backup_id=str(done["BackupId"]), pay_type="Postpaid"
            )
        ).body.dbinstance_id
        deadline = time.monotonic() + 300
        item = _instance(svc, key, clone_id)
        while item["DBInstanceStatus"] == "Creating" and time.monotonic() < deadline:
            time.sleep(0.5)
            item = _instance(svc, key, clone_id)
        assert item["DBInstanceStatus"] == "Running", item
        a = source.access()
        clone = ServerAccess(item["ConnectionString"], int(item["Port"]), a.user, a.password)
        assert fingerprint("MariaDB", clone, SAMPLE) == fingerprint("MariaDB", a, SAMPLE)
    finally:
        workers.stop_all()
        svc.stop()
