"""Regressions of issue 10 through the real service: ids beyond 64 bits, methods other
than GET/POST, strict integers, control characters, unfilled messages, log forging,
the DBName probe and per-key throttling."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pymysql
import pytest

from rdsbackup.instances.servers import LocalServer
from rdsbackup.service.links import LinkMaker, LinkSigner
from tests.fixtures.servers import ServerFactory
from tests.fixtures.service import Key, Rds, signed_v1, tea_client

HUGE_IDS = ["9223372036854775808", "99999999999999999999", "0", "-1", "1" * 400]


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = dict(resp.json())
    assert body["Code"] == code, body
    assert body["RequestId"] == resp.headers["x-acs-request-id"]
    return body


def call(rds: Rds, action: str, **params: str) -> httpx.Response:
    return signed_v1(rds.endpoint, rds.key, action, params)


@pytest.mark.parametrize("value", HUGE_IDS)
def test_ids_no_row_can_have_answer_not_found_or_invalid(rds: Rds, value: str) -> None:
    maria = rds.mariadb_id
    resp = call(rds, "DescribeBackups", DBInstanceId=maria, BackupId=value)
    assert resp.status_code == 200 and resp.json()["Items"]["Backup"] == [], resp.text
    error(
        call(rds, "DeleteBackup", DBInstanceId=maria, BackupId=value),
        404,
        "InvalidBackupSetID.NotFound",
    )
    error(
        call(rds, "DeleteBackup", DBInstanceId=maria, BackupId=f"1,{value}"),
        404,
        "InvalidBackupSetID.NotFound",
    )
    error(
        call(rds, "VerifyBackup", DBInstanceId=maria, BackupId=value),
        404,
        "InvalidBackupSetID.NotFound",
    )
    error(
        call(rds, "RestoreDatabase", DBInstanceId=maria, BackupId=value, DBName="shop"),
        404,
        "InvalidBackupSetID.NotFound",
    )
    clone = call(rds, "CloneDBInstance", DBInstanceId=maria, BackupId=value, PayType="Postpaid")
    error(clone, 404, "InvalidBackupSetID.NotFound")
    for action, name in (
        ("DescribeBackupTasks", "BackupJobId"),
        ("DescribeRestoreTasks", "TaskId"),
    ):
        body = error(
            call(rds, action, DBInstanceId=maria, **{name: value}), 400, "InvalidParameter"
        )
        assert f'"{name}"' in body["Message"]


def test_a_signed_download_link_to_an_id_beyond_64_bits_is_not_found(rds: Rds) -> None:
    secret = (rds.service.root / "state" / "secret.key").read_bytes().strip()
    maker = LinkMaker(LinkSigner(secret), f"http://{rds.endpoint}", f"http://{rds.endpoint}", 60)
    for backup_id in (2**63, 2**64, int("9" * 20)):
        resp = httpx.get(maker.url(maker.target(backup_id, "0" * 64)), timeout=30)
        error(resp, 404, "InvalidBackupSetID.NotFound")
    error(
        httpx.get(
            f"http://{rds.endpoint}/download/99999999999999999999?Expires=1&Set=x&Signature=y",
            timeout=30,
        ),
        403,
        "Forbidden.DownloadLink",
    )


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "PUT", "DELETE", "OPTIONS", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/some/path", "/download/1/manifest.json"])
def test_other_methods_answer_unsupported_http_method(rds: Rds, method: str, path: str) -> None:
    resp = httpx.request(method, f"http://{rds.endpoint}{path}?Format=JSON", timeout=10)
    body = error(resp, 400, "UnsupportedHTTPMethod")
    assert resp.headers["content-type"].startswith("application/json")
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_xml_error_for_an_unsupported_method_parses(rds: Rds) -> None:
    resp = httpx.request("PROPFIND", f"http://{rds.endpoint}/?Format=XML", timeout=10)
    assert resp.status_code == 400
    assert ET.fromstring(resp.content).findtext("Code") == "UnsupportedHTTPMethod"


@pytest.mark.parametrize("value", ["\uff13\uff10", "3_0", "+30", " 30", "\u0663\u0660", "30\n"])
def test_integers_are_ascii_digits_only(rds: Rds, value: str) -> None:
    resp = call(rds, "DescribeDBInstances", RegionId="cn-hangzhou", PageSize=value)
    assert '"PageSize"' in error(resp, 400, "InvalidParameter")["Message"]


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x0b", "\x0c", "\x00", "\ufffe"])
def test_control_characters_are_refused_on_input(rds: Rds, char: str) -> None:
    resp = call(
        rds,
        "CloneDBInstance",
        DBInstanceId=rds.mariadb_id,
        BackupId="1",
        PayType="Postpaid",
        DBInstanceDescription=f"copy{char}of prod",
        Format="XML",
    )
    assert resp.status_code == 400
    root = ET.fromstring(resp.content)
    assert root.findtext("Code") == "InvalidParameter"
    assert '"DBInstanceDescription"' in (root.findtext("Message") or "")
    listing = call(rds, "DescribeDBInstances", RegionId="cn-hangzhou", Format="XML")
    assert listing.status_code == 200 and ET.fromstring(listing.content).tag


def test_unparseable_restore_time_has_its_own_code(rds: Rds) -> None:
    resp = call(
        rds,
        "CloneDBInstance",
        DBInstanceId=rds.mariadb_id,
        RestoreTime="garbage",
        PayType="Postpaid",
    )
    body = error(resp, 400, "InvalidRestoreTime.Format")  # as Alibaba answers it
    assert body["Message"] == "Specified restore time is not valid."


def test_log_lines_cannot_be_forged(rds: Rds) -> None:
    forged = "x\r\nFAKE LINE 2026-01-01 INFO rdsbackup: admin logged in\x1b[2J"
    for params in (
        {"DBInstanceId": rds.mariadb_id, "BackupMethod": "Logical", "DBName": forged},
        {"DBInstanceId": rds.mariadb_id, "BackupMethod": "Logical", "DBName": "x\nFAKE LINE"},
        {"DBInstanceId": forged},
    ):
        assert call(rds, "CreateBackup", **params).status_code == 400
    resp = httpx.get(
        f"http://{rds.endpoint}/", params={"Action": forged, "Version": "x"}, timeout=10
    )
    assert resp.status_code in (400, 404)
    log = rds.service.log_path.read_text(errors="replace")
    assert not any(line.startswith("FAKE") for line in log.splitlines())
    for line in log.splitlines()[-50:]:
        if line.startswith("{"):
            assert json.loads(line)["level"]


def test_the_http_servers_own_lines_are_json_lines_too(rds: Rds) -> None:
    """uvicorn logs a request it cannot parse; that line goes through the service's
    JSON-line handler like every other, not uvicorn's plain-text one."""
    host, port = rds.endpoint.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\x01\r\n\r\n")
        conn.recv(4096)
    deadline = time.monotonic() + 10
    while True:
        lines = [
            line
            for line in rds.service.log_path.read_text(errors="replace").splitlines()
            if "Invalid HTTP request" in line
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert lines, rds.service.log_tail()
    for line in lines:
        assert json.loads(line)["logger"].startswith("uvicorn"), line


def _connections(server: LocalServer) -> int:
    access = server.access()
    conn = pymysql.connect(
        host=access.host, port=access.port, user=access.user, password=access.password
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            row = cur.fetchone()
            assert row is not None
            return int(row[1])
    finally:
        conn.close()


def test_unknown_database_names_do_not_flood_the_server(
    service_maker: Any, server_factory: ServerFactory
) -> None:
    """A server of its own and a service with no health probes in the window, so every
    connection counted is the API's doing."""
    mariadb = server_factory("MariaDB")
    mariadb.start()
    svc = service_maker(probe_interval_seconds=3600)
    key = svc.add_key("flood")
    instance_id = svc.register(mariadb, "flood")
    svc.start()
    requests = 60

    def describe(n: int) -> httpx.Response:
        params = {"DBInstanceId": instance_id, "DBName": f"nope_{n}"}
        return signed_v1(svc.endpoint, key, "DescribeDatabases", params)

    before, started = _connections(mariadb), time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        for resp in pool.map(describe, range(requests)):
            assert resp.status_code == 200 and resp.json()["Databases"]["Database"] == []
    elapsed = time.monotonic() - started
    opened = _connections(mariadb) - before - 1  # our own second connection
    # 3 probes at once, then one a second (database_probe_seconds), each a connection or
    # two; without the limit: one per request.
    assert opened <= 2 * (3 + elapsed + 1), (opened, elapsed)
    assert opened < requests / 2, (opened, elapsed)


def test_throttling_per_access_key_through_the_sdk(service_maker: Any) -> None:
    from alibabacloud_rds20140815 import models
    from alibabacloud_tea_openapi.exceptions import ClientException

    # a token every 4 s: six calls take far less on any machine, so the fourth is refused
    svc = service_maker(api_rate_per_second=0.25, api_burst=3)
    out = svc.cli_json("key", "create", "--account", "throttled")
    key = Key(out["AccessKeyId"], out["AccessKeySecret"])
    other = svc.cli_json("key", "create", "--account", "neighbour")
    svc.start()
    client = tea_client(svc.endpoint, key)
    request = models.DescribeDBInstancesRequest(region_id="cn-hangzhou")
    codes: list[str] = []
    for _ in range(6):
        try:
            client.describe_dbinstances(request)
            codes.append("ok")
        except ClientException as e:
            assert e.status_code == 400, e
            assert "Request was denied due to user flow control." in e.message
            codes.append(e.code)
    assert codes[:3] == ["ok"] * 3 and "Throttling.User" in codes[3:], codes
    neighbour = tea_client(svc.endpoint, Key(other["AccessKeyId"], other["AccessKeySecret"]))
    assert neighbour.describe_dbinstances(request).status_code == 200  # its own bucket
    time.sleep(4.2)
    assert client.describe_dbinstances(request).status_code == 200
