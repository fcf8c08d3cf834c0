"""No secret reaches a log line or a reason the catalog keeps, while the served service
(memory engine) handles calls that carry secrets; and the lines name the RequestId of
the call and the BackupJobId of the run they belong to."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from alibabacloud_rds20140815 import models
from cryptography.fernet import Fernet
from sqlalchemy import select

from rdsbackup import logs
from rdsbackup.catalog.models import BackupJob, BackupSet, Instance, RestoreTask
from rdsbackup.engines.base import ServerAccess
from rdsbackup.testing import MemoryService, memory_service, register
from tests.fixtures.memory import memory_settings, served, shop
from tests.fixtures.service import Key, signed_v1, tea_client, wait_job

TOKEN = "metrics-" + secrets.token_hex(12)
ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()
SECRET_KEY = Fernet.generate_key().decode()


@dataclass
class Logged:
    memory: MemoryService
    endpoint: str
    key: Key
    instance_id: str
    password: str
    stream: io.StringIO
    secrets: list[str] = field(default_factory=list)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]


CLIENT_LOGGERS = ("httpx", "httpcore", "urllib3", "alibabacloud", "Tea")
"""The test's own clients log in this process too (httpx logs each URL it requests):
their lines are not the service's."""


def _service_side(record: logging.LogRecord) -> bool:
    return not record.name.startswith(CLIENT_LOGGERS)


@pytest.fixture
def logged(tmp_path: Path, migrated_catalog: Path) -> Iterator[Logged]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    logs.configure(logging.DEBUG, "json", stream=stream)  # what `rdsbackup serve` installs
    root.handlers[0].addFilter(_service_side)
    settings = memory_settings(
        tmp_path,
        migrated_catalog,
        secret_key=SECRET_KEY,
        encrypt_backups=True,
        encryption_keys={"kms-1": ENCRYPTION_KEY},
        metrics_token=TOKEN,
    )
    memory = memory_service(settings)
    server = shop()
    server.password = "pw-" + secrets.token_urlsafe(16)
    instance_id = memory.add_instance(server, account="acct1")
    key = Key(*memory.service.core.accounts.create_key("acct1"))
    try:
        with served(memory) as endpoint:
            yield Logged(memory, endpoint, key, instance_id, server.password, stream)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _backup(logged: Logged, instance_id: str) -> tuple[str, dict[str, Any]]:
    resp = signed_v1(logged.endpoint, logged.key, "CreateBackup", {"DBInstanceId": instance_id})
    assert resp.status_code == 200, resp.text
    job = wait_job(logged.endpoint, logged.key, instance_id, resp.json()["BackupJobId"], 30)
    return resp.headers["x-acs-request-id"], job


def test_no_secret_is_logged_and_lines_name_their_call_and_job(logged: Logged) -> None:
    core = logged.memory.service.core
    found: list[str] = [
        logged.key.secret,
        logged.password,
        ENCRYPTION_KEY,
        base64.b64decode(ENCRYPTION_KEY).hex(),
        SECRET_KEY,
        TOKEN,
    ]
    # Signed calls of both SDK signature versions, and one signed with a wrong secret.
    for v2 in (False, True):
        client = tea_client(logged.endpoint, logged.key, v2=v2)
        client.describe_dbinstances(models.DescribeDBInstancesRequest(region_id="cn-hangzhou"))
    wrong_secret = "wrong-" + secrets.token_hex(10)
    found.append(wrong_secret)
    refused = signed_v1(
        logged.endpoint, logged.key, "DescribeBackups", {"DBInstanceId": "x"}, secret=wrong_secret
    )
    assert refused.json()["Code"] == "SignatureDoesNotMatch"

    # An instance registered with a password its server refuses: its backup fails.
    wrong_password = "bad-pw-" + secrets.token_urlsafe(12)
    found.append(wrong_password)
    account_id = core.accounts.ensure_account("acct1")
    access = logged.memory.engine.serve(shop())
    refused_id = register(
        core.inventory,
        account_id,
        ServerAccess(access.host, access.port, access.user, wrong_password),
    )
    core.inventory.probe(refused_id)

    # An encrypted backup that finishes, one that fails half way, one that cannot start.
    request_id, job = _backup(logged, logged.instance_id)
    assert job["BackupStatus"] == "Finished", job
    server = logged.memory.engine.server(core.inventory.access(logged.instance_id))
    server.fail_next_backup()
    _, failed = _backup(logged, logged.instance_id)
    assert failed["BackupStatus"] == "Failed", failed
    unreachable = signed_v1(
        logged.endpoint, logged.key, "CreateBackup", {"DBInstanceId": refused_id}
    )
    assert unreachable.json()["Code"] == "IncorrectDBInstanceState", unreachable.text

    # Its signed download link, fetched; and a forged one.
    listed = signed_v1(
        logged.endpoint,
        logged.key,
        "DescribeBackups",
        {"DBInstanceId": logged.instance_id, "BackupId": job["BackupId"]},
    ).json()["Items"]["Backup"][0]
    url = listed["BackupDownloadURL"]
    signature = parse_qs(urlsplit(url).query)["Signature"][0]
    found.append(signature)
    assert httpx.get(url, timeout=30).status_code == 200
    forged = url.replace(signature, "0" * len(signature))
    assert httpx.get(forged, timeout=30).status_code >= 400

    # Metrics scraped with a wrong token and with the right one.
    metrics = f"http://{logged.endpoint}/metrics"
    assert httpx.get(metrics, headers={"Authorization": "Bearer nope"}).status_code == 403
    ok = httpx.get(metrics, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200

    text = logged.stream.getvalue()
    with core.catalog.read() as s:
        reasons = [
            *s.scalars(select(BackupJob.failed_reason)),
            *s.scalars(select(BackupSet.failed_reason)),
            *s.scalars(select(RestoreTask.failed_reason)),
            *s.scalars(select(Instance.status_reason)),
        ]
    assert any(reasons), "the failures left no reason to check"
    for secret in found:
        assert secret not in text, f"a secret reached the log: {secret[:6]}..."
        assert not any(secret in r for r in reasons), f"a secret reached a reason: {secret[:6]}"
    for secret in found:
        assert secret not in ok.text

    entries = logged.entries()
    call = [e for e in entries if e.get("RequestId") == request_id]
    assert [e["message"].split(" ")[:3] for e in call] == [["CreateBackup", "Success", "200"]]
    assert all(e["DBInstanceId"] == logged.instance_id for e in call)
    assert all("BackupJobId" not in e for e in call)  # the call's, not the job's
    finished = [e for e in entries if e.get("BackupJobId") == str(job["BackupJobId"])]
    assert finished and all(e["DBInstanceId"] == logged.instance_id for e in finished)
    assert any("finished" in e["message"] for e in finished)
    failures = [e for e in entries if e.get("BackupJobId") == str(failed["BackupJobId"])]
    assert any(e["level"] == "WARNING" and "failed" in e["message"] for e in failures)
    assert all("RequestId" not in e for e in finished + failures)  # jobs run apart
