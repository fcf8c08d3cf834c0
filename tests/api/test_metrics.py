"""``GET /metrics`` of the whole service over the memory engine: who may scrape, and the
figures a user alerts on after real API calls (official SDK and signed requests)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_rds20140815 import models
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from rdsbackup.catalog.models import BackupSet
from rdsbackup.config import Settings
from rdsbackup.engines.memory import MemoryServer
from rdsbackup.testing import MemoryService, memory_service
from tests.fixtures.memory import memory_settings, served, shop
from tests.fixtures.service import Key, signed_v1, tea_client, wait_job

TOKEN = "scrape-token-7f3a"
Labels = dict[str, str]


@dataclass
class Scraped:
    samples: list[tuple[str, Labels, float]]

    def value(self, name: str, **labels: str) -> float:
        """The one sample of ``name`` whose labels include ``labels`` (0 if none)."""
        found = [v for n, ls, v in self.samples if n == name and labels.items() <= ls.items()]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else 0.0

    def total(self, name: str, **labels: str) -> float:
        return sum(v for n, ls, v in self.samples if n == name and labels.items() <= ls.items())


@dataclass
class Rig:
    endpoint: str
    key: Key
    instance_id: str
    server: MemoryServer
    memory: MemoryService

    def scrape(self, token: str | None = TOKEN) -> Scraped:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = httpx.get(f"http://{self.endpoint}/metrics", headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        return parse(resp.text)

    def backup(self) -> dict[str, Any]:
        params = {"DBInstanceId": self.instance_id}
        resp = signed_v1(self.endpoint, self.key, "CreateBackup", params)
        assert resp.status_code == 200, resp.text
        return wait_job(self.endpoint, self.key, self.instance_id, resp.json()["BackupJobId"], 30)


def parse(text: str) -> Scraped:
    samples = [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    return Scraped(samples)


def asgi_get(memory: MemoryService, path: str, client_host: str) -> httpx.Response:
    """A request from ``client_host`` (the ASGI scope's client address)."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=memory.service.asgi, client=(client_host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://rds") as client:
            return await client.get(path)

    return asyncio.run(call())


@pytest.fixture
def rig(tmp_path: Path, migrated_catalog: Path) -> Iterator[Rig]:
    memory = memory_service(memory_settings(tmp_path, migrated_catalog, metrics_token=TOKEN))
    server = shop()
    instance_id = memory.add_instance(server, account="acct1")
    key = Key(*memory.service.core.accounts.create_key("acct1"))
    with served(memory) as endpoint:
        yield Rig(endpoint, key, instance_id, server, memory)


def test_a_token_is_required_when_set(rig: Rig) -> None:
    url = f"http://{rig.endpoint}/metrics"
    missing = httpx.get(url, timeout=10)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    assert wrong.status_code == 403
    basic = httpx.get(url, auth=("x", TOKEN), timeout=10)
    assert basic.status_code == 401
    for body in (missing.text, wrong.text, basic.text):
        assert "rdsbackup_" not in body and rig.instance_id not in body
    scraped = rig.scrape()
    assert scraped.value("rdsbackup_catalog_up") == 1
    assert scraped.value("rdsbackup_instances", engine="MariaDB", status="Running") == 1


def test_without_a_token_only_loopback_clients_may_scrape(
    tmp_path: Path, migrated_catalog: Path
) -> None:
    memory = memory_service(memory_settings(tmp_path, migrated_catalog))
    try:
        with memory.serving() as endpoint:  # 127.0.0.1
            assert httpx.get(f"http://{endpoint}/metrics", timeout=10).status_code == 200
        refused = asgi_get(memory, "/metrics", "203.0.113.7")
        assert refused.status_code == 403 and "metrics_token" in refused.text
        assert asgi_get(memory, "/metrics", "::1").status_code == 200
    finally:
        memory.service.core.catalog.dispose()


def test_metrics_can_be_switched_off(tmp_path: Path, migrated_catalog: Path) -> None:
    memory = memory_service(memory_settings(tmp_path, migrated_catalog, metrics_enabled=False))
    try:
        resp = asgi_get(memory, "/metrics", "127.0.0.1")
        assert resp.status_code == 400 and "rdsbackup_" not in resp.text  # an RPC path like any
        assert "<Code>MissingParameter" in resp.text, resp.text
    finally:
        memory.service.core.catalog.dispose()


def test_a_finished_backup_shows_in_jobs_sizes_and_last_success(rig: Rig) -> None:
    labels = {"method": "Physical", "engine": "MariaDB", "mode": "Manual"}
    before = rig.scrape()
    assert before.value("rdsbackup_backup_jobs", status="Finished", **labels) == 0
    assert before.value("rdsbackup_backup_last_success_timestamp_seconds") == 0  # never

    job = rig.backup()
    assert job["BackupStatus"] == "Finished", job
    after = rig.scrape()
    assert after.value("rdsbackup_backup_jobs", status="Finished", **labels) == 1
    assert after.total("rdsbackup_backup_jobs", status="Failed") == 0
    with rig.memory.service.core.catalog.read() as s:
        backup = s.get_one(BackupSet, int(job["BackupId"]))
    end = backup.end_time.replace(tzinfo=UTC).timestamp()
    mine = {"instance_id": rig.instance_id, "engine": "MariaDB"}
    assert after.value("rdsbackup_backup_last_success_timestamp_seconds", **mine) == end
    assert after.value("rdsbackup_backup_sets", **mine) == 1
    assert after.value("rdsbackup_backup_sets_stored_bytes", **mine) == backup.size > 0
    assert after.value("rdsbackup_backup_last_error_status", **mine) == 0
    assert after.value("rdsbackup_backup_last_size_bytes", **mine) == backup.raw_size
    hist = {"method": "Physical", "engine": "MariaDB"}
    assert after.value("rdsbackup_backup_duration_seconds_count", **hist) == 1
    assert after.value("rdsbackup_backup_size_bytes_sum", **hist) == backup.raw_size
    assert after.value("rdsbackup_backup_size_bytes_bucket", le="+Inf", **hist) == 1

    # The gauge agrees with what DescribeBackups says (to the second it shows).
    listed = tea_client(rig.endpoint, rig.key).describe_backups(
        models.DescribeBackupsRequest(dbinstance_id=rig.instance_id, backup_id=job["BackupId"])
    )
    shown = listed.body.items.backup[0].backup_end_time
    wire = datetime.strptime(shown, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert int(after.value("rdsbackup_backup_last_success_timestamp_seconds", **mine)) == wire


def test_a_failed_backup_shows_in_the_failed_count(rig: Rig) -> None:
    rig.server.fail_next_backup()
    job = rig.backup()
    assert job["BackupStatus"] == "Failed", job
    scraped = rig.scrape()
    labels = {"method": "Physical", "engine": "MariaDB", "mode": "Manual"}
    assert scraped.value("rdsbackup_backup_jobs", status="Failed", **labels) == 1
    assert scraped.value("rdsbackup_backup_jobs", status="Finished", **labels) == 0
    mine = {"instance_id": rig.instance_id}
    assert scraped.value("rdsbackup_backup_last_error_status", **mine) == 1
    assert scraped.value("rdsbackup_backup_last_success_timestamp_seconds", **mine) == 0
    assert scraped.value("rdsbackup_backup_duration_seconds_count") == 0  # finished jobs only

    assert rig.backup()["BackupStatus"] == "Finished"  # the next one works: status clears
    assert rig.scrape().value("rdsbackup_backup_last_error_status", **mine) == 0


def test_api_requests_are_counted_by_action_and_code(rig: Rig) -> None:
    before = rig.scrape()
    client = tea_client(rig.endpoint, rig.key)
    client.describe_backups(models.DescribeBackupsRequest(dbinstance_id=rig.instance_id))
    client.describe_backups(models.DescribeBackupsRequest(dbinstance_id=rig.instance_id))
    bad = signed_v1(
        rig.endpoint,
        rig.key,
        "CreateBackup",
        {"DBInstanceId": rig.instance_id, "BackupMethod": "Teleport"},
    )
    code = "InvalidBackupMethod.ValueNotSupport"
    assert bad.status_code == 400 and bad.json()["Code"] == code, bad.text
    unknown = signed_v1(rig.endpoint, rig.key, "StealEverything", {})
    assert unknown.json()["Code"] == "InvalidAction.NotFound", unknown.text
    after = rig.scrape()

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    ok = {"action": "DescribeBackups", "code": "Success", "http_status": "200"}
    assert grew("rdsbackup_api_requests_total", **ok) == 2
    invalid = {"action": "CreateBackup", "code": code, "http_status": "400"}
    assert grew("rdsbackup_api_requests_total", **invalid) == 1
    assert grew("rdsbackup_api_requests_total", code="Success", action="CreateBackup") == 0
    # A name no action has is counted, under one label value whatever clients send.
    unknown_labels = {"action": "Unknown", "code": "InvalidAction.NotFound"}
    assert grew("rdsbackup_api_requests_total", **unknown_labels) == 1
    assert not any(ls.get("action") == "StealEverything" for _, ls, _ in after.samples)
    latency = "rdsbackup_api_request_duration_seconds_count"
    assert grew(latency, action="DescribeBackups") == 2
    assert grew(latency, action="CreateBackup") == 1
    assert after.value(
        "rdsbackup_api_request_duration_seconds_bucket", action="DescribeBackups", le="+Inf"
    ) == after.value(latency, action="DescribeBackups")


def test_labels_name_no_account(rig: Rig) -> None:
    rig.backup()
    text = httpx.get(
        f"http://{rig.endpoint}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    ).text
    assert rig.instance_id in text
    assert "acct1" not in text and rig.key.access_key_id not in text


def test_a_short_token_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="metrics_token"):
        Settings(metrics_token="secret")
    with pytest.raises(ValidationError, match="metrics_token"):
        Settings(metrics_token="")
