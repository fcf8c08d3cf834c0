"""Property test over the action table against the real service: every action, every
parameter, hostile values (random unicode, huge, negative, injections, NUL), both
formats, both signature versions, GET and POST. Every answer is a well-formed Alibaba
envelope (XML parsed by a real parser, JSON by ``json``) with a RequestId, never a 5xx,
and nothing changes: catalog rows and the fixture servers' databases.

Mutating actions only ever get instance ids no instance has (any 200 to one fails the
test), so their parameters are parsed and refused without touching the fixtures.
Values longer than a URL can carry (uvicorn's request line limit answers before the
service does) travel in a POST body.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

import httpx
import psycopg
import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from rdsbackup.api import signature as sig
from rdsbackup.api.actions import action_table
from rdsbackup.catalog.models import Base
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Key, Rds, now_stamp

PARAMETERS: dict[str, tuple[str, ...]] = {
    "CreateBackup": (
        "DBInstanceId", "BackupMethod", "BackupType", "BackupStrategy", "DBName",
        "BackupRetentionPeriod", "ResourceGroupId", "ClientToken", "CompressType",
    ),
    "DescribeBackupTasks": ("DBInstanceId", "BackupJobId", "BackupJobStatus", "BackupMode"),
    "DescribeBackups": (
        "DBInstanceId", "BackupId", "BackupStatus", "BackupMode", "BackupType", "StartTime",
        "EndTime", "PageNumber", "PageSize",
    ),
    "DeleteBackup": ("DBInstanceId", "BackupId"),
    "DescribeDBInstances": (
        "RegionId", "DBInstanceId", "Engine", "DBInstanceStatus", "ResourceGroupId",
        "PageNumber", "PageSize",
    ),
    "DescribeDBInstanceAttribute": ("DBInstanceId",),
    "DescribeDatabases": ("DBInstanceId", "DBName", "DBStatus", "PageNumber", "PageSize"),
    "DeleteDBInstance": ("DBInstanceId", "ReleasedKeepPolicy"),
    "CloneDBInstance": (
        "DBInstanceId", "BackupId", "RestoreTime", "PayType", "DbNames", "BackupType",
        "DBInstanceDescription",
    ),
    "RestoreDatabase": (
        "DBInstanceId", "BackupId", "DBName", "TargetDBInstanceId", "TargetDBName",
        "RestoreTime",
    ),
    "DescribeBinlogFiles": ("DBInstanceId", "StartTime", "EndTime", "PageNumber", "PageSize"),
    "DescribeLocalAvailableRecoveryTime": ("DBInstanceId",),
    "VerifyBackup": ("DBInstanceId", "BackupId"),
    "DescribeRestoreTasks": ("DBInstanceId", "TaskId"),
    "DescribeBackupPolicy": (
        "DBInstanceId", "BackupPolicyMode", "CompressType", "ReleasedKeepPolicy",
    ),
    "ModifyBackupPolicy": (
        "DBInstanceId", "BackupPolicyMode", "PreferredBackupTime", "PreferredBackupPeriod",
        "BackupRetentionPeriod", "BackupLog", "BackupInterval", "BackupMethod", "CompressType",
        "Category", "EnableIncrementDataBackup", "IncBackupInterval",
        "ArchiveBackupRetentionPeriod", "ArchiveBackupKeepPolicy", "ArchiveBackupKeepCount",
        "ReleasedKeepPolicy", "LogBackupFrequency", "EnablePitrProtection", "EnableBackupLog",
        "LogBackupRetentionPeriod", "LocalLogRetentionHours", "LocalLogRetentionSpace",
        "HighSpaceUsageProtection", "LogBackupLocalRetentionNumber", "GfsWeeklyCount",
        "GfsMonthlyCount", "GfsYearlyCount",
    ),
    "EnableBackupEncryption": ("DBInstanceName", "EncryptionKey"),
    "DisableBackupEncryption": ("DBInstanceName",),
}  # fmt: skip
READ_ONLY = {a for a in PARAMETERS if a.startswith("Describe")}
INSTANCE_PARAMS = {"DBInstanceId", "TargetDBInstanceId", "DBInstanceName"}
REQUIRED = {"DBInstanceId", "RegionId", "PayType", "BackupId", "DBName", "DBInstanceName"}
EXAMPLES = int(os.environ.get("RDSBACKUP_HOSTILE_EXAMPLES", "1500"))

INJECTIONS = [
    "'; DROP TABLE backup_sets; --",
    '" OR 1=1 --',
    "$(touch /tmp/rdsbackup-pwned)",
    "`touch /tmp/rdsbackup-pwned`",
    "; rm -rf / #",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "a\x00b",
    "\x00",
    "%00",
    "\r\nFAKE LINE",
    "\x1b[2J\x07",
    "\ufffe\uffff",
    "<![CDATA[x]]><x/>",
    "&lt;&#0;&#x1;",
    "{param}{sts}%s%n{0}",
    "\uff13\uff10",
    "\u0663\u0660",
    "3_0",
    "+1",
    " 30 ",
    "1e309",
    "NaN",
    "shop,,shop",
    ",",
    "*",
    "Describe*",
]
NUMBERS = [
    "0",
    "-1",
    "-9223372036854775809",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "9" * 40,
    "1" * 5000,
]
VALID = [
    "Physical", "Logical", "Snapshot", "FullBackup", "IncrementalBackup", "Auto", "db",
    "instance", "shop", "analytics", "30", "50", "100", "1", "7", "Postpaid", "None", "All",
    "Success", "Failed", "Manual", "Automated", "MariaDB", "PostgreSQL", "Running",
    "cn-hangzhou", "2024-01-01T00:00Z", "2024-01-01T00:00:00Z", "zstd",
]  # fmt: skip

values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(INJECTIONS),
    st.sampled_from(NUMBERS),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(VALID),
    st.text(min_size=2000, max_size=6000),
    st.just(""),
)


@st.composite
def requests(draw: st.DrawFn, real_ids: tuple[str, ...]) -> dict[str, Any]:
    action = draw(st.sampled_from(sorted(PARAMETERS)))
    params: dict[str, str] = {}
    for name in PARAMETERS[action]:
        if name not in REQUIRED and not draw(st.booleans()):
            continue  # absent; a required one is absent when its value is ""
        if name in INSTANCE_PARAMS and action in READ_ONLY and draw(st.booleans()):
            params[name] = draw(st.sampled_from(real_ids))
        else:
            params[name] = draw(values)
    if action in READ_ONLY and "DBInstanceId" in PARAMETERS[action] and draw(st.booleans()):
        params["DBInstanceId"] = draw(st.sampled_from(real_ids))
    if draw(st.integers(0, 9)) == 0:
        params[draw(st.text(min_size=1, max_size=20))] = draw(values)
    return {
        "action": action,
        "params": params,
        "format": draw(st.sampled_from(["JSON", "XML", "json", "", "YAML"])),
        "signature": draw(st.sampled_from(["v1", "v3"])),
        "method": draw(st.sampled_from(["GET", "POST"])),
    }


def send(client: httpx.Client, endpoint: str, key: Key, req: dict[str, Any]) -> httpx.Response:
    params = {k: v for k, v in req["params"].items() if k not in ("Action", "Version")}
    if req["format"]:
        params["Format"] = req["format"]
    method = req["method"]
    if len(urlencode(params)) > 6000:
        method = "POST"  # longer than a request line may be
    if req["signature"] == "v1":
        return _v1(client, endpoint, key, req["action"], params, method)
    return _v3(client, endpoint, key, req["action"], params, method)


def _v1(
    client: httpx.Client,
    endpoint: str,
    key: Key,
    action: str,
    params: dict[str, str],
    method: str,
) -> httpx.Response:
    common = {
        "Action": action,
        "Version": "2014-08-15",
        "AccessKeyId": key.access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": now_stamp(),
    }
    signed = {**params, **common}
    common["Signature"] = sig.v1_signature(method, signed, key.secret)
    if method == "GET":
        return client.get(f"http://{endpoint}/", params={**params, **common})
    return client.post(f"http://{endpoint}/", params=common, data=params)


def _v3(
    client: httpx.Client,
    endpoint: str,
    key: Key,
    action: str,
    params: dict[str, str],
    method: str,
) -> httpx.Response:
    body = urlencode(params).encode() if method == "POST" else b""
    query: list[tuple[str, str | int | float | bool | None]] = (
        sorted(params.items()) if method == "GET" else []
    )
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "host": endpoint,
        "x-acs-action": action,
        "x-acs-version": "2014-08-15",
        "x-acs-date": now_stamp(),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": payload,
    }
    if body:
        headers["content-type"] = "application/x-www-form-urlencoded"
    signed = sorted(headers)
    pairs = [(k, str(v)) for k, v in query]
    creq = sig.v3_canonical_request(method, "/", pairs, headers, signed, payload)
    signature = sig.v3_signature(sig.v3_string_to_sign(creq), key.secret)
    headers["authorization"] = (
        f"{sig.V3_ALGORITHM} Credential={key.access_key_id},"
        f"SignedHeaders={';'.join(signed)},Signature={signature}"
    )
    return client.request(
        method, f"http://{endpoint}/", params=query, content=body, headers=headers
    )


def envelope(resp: httpx.Response) -> dict[str, str | None]:
    """Code and RequestId of a body that must be a well-formed Alibaba envelope."""
    ctype = resp.headers["content-type"]
    if "xml" in ctype:
        root = ET.fromstring(resp.content)
        fields = {child.tag: child.text for child in root}
        if resp.status_code != 200:
            assert root.tag == "Error", resp.text
    else:
        assert ctype.startswith("application/json"), ctype
        fields = json.loads(resp.content)
        assert isinstance(fields, dict)
    assert fields.get("RequestId") and fields["RequestId"] == resp.headers["x-acs-request-id"]
    if resp.status_code == 200:
        assert "Code" not in fields, fields
    else:
        assert fields.get("Code") and fields.get("Message"), fields
    return {"Code": fields.get("Code"), "RequestId": fields["RequestId"]}


BACKGROUND = {"nonces", "log_files", "log_gaps", "log_streams", "leases"}
"""Tables written by every request (nonces) or by the service's own loops, whatever the
requests are: the log shipper streams the session servers once a policy test has
switched their log backup on."""


def catalog_rows(rds: Rds) -> dict[str, int]:
    catalog = rds.service.catalog()
    try:
        with catalog.read() as s:
            return {
                name: s.scalar(select(func.count()).select_from(table)) or 0
                for name, table in Base.metadata.tables.items()
                if name not in BACKGROUND
            }
    finally:
        catalog.dispose()


def server_databases(mariadb: LocalServer, postgres: LocalServer) -> tuple[list[str], list[str]]:
    m, p = mariadb.access(), postgres.access()
    conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            maria = sorted(r[0] for r in cur.fetchall())
    finally:
        conn.close()
    with psycopg.connect(
        host=p.host, port=p.port, user=p.user, password=p.password, dbname="postgres"
    ) as pg:
        names = pg.execute("SELECT datname FROM pg_database ORDER BY datname").fetchall()
    return maria, [r[0] for r in names]


@pytest.fixture
def keys(rds: Rds) -> list[Key]:
    """Requests rotate over a few keys of acct1, so that the default flow control
    (100/s a key) is not what answers."""
    return [rds.key, *(rds.service.add_key("acct1") for _ in range(3))]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def test_the_table_is_every_action() -> None:
    assert set(PARAMETERS) == set(action_table())


def test_hostile_requests_never_break_the_envelope_nor_change_anything(
    rds: Rds, mariadb: LocalServer, postgres: LocalServer, keys: list[Key], client: httpx.Client
) -> None:
    real_ids = (rds.mariadb_id, rds.postgres_id)
    sent: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    failures: list[str] = []
    rows_before = catalog_rows(rds)
    databases_before = server_databases(mariadb, postgres)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(req=requests(real_ids))
    def run(req: dict[str, Any]) -> None:
        key = keys[sent["requests"] % len(keys)]
        resp = send(client, rds.endpoint, key, req)
        sent["requests"] += 1
        # Collected rather than raised: the run reports every kind of failure it meets.
        if resp.status_code >= 500:
            sent["5xx"] += 1
            failures.append(f"{resp.status_code} {req!r}: {resp.text[:300]}")
            return
        try:
            body = envelope(resp)
        except (AssertionError, ET.ParseError, ValueError, KeyError) as e:
            sent["malformed"] += 1
            failures.append(f"malformed body {e!r} for {req!r}: {resp.content[:300]!r}")
            return
        codes[body["Code"] or "200"] += 1
        if resp.status_code == 200 and req["action"] not in READ_ONLY:
            failures.append(f"a mutating call succeeded: {req!r}: {resp.text[:300]}")

    started = time.monotonic()
    try:
        run()
    finally:
        print(f"\nhostile requests: {sent['requests']} sent in {time.monotonic() - started:.1f} s, "
              f"{sent['5xx']} 5xx, {sent['malformed']} malformed; "
              f"codes: {dict(codes.most_common())}")  # fmt: skip
    assert not failures, "\n".join(failures[:20])
    assert catalog_rows(rds) == rows_before
    assert server_databases(mariadb, postgres) == databases_before
