"""Download links through the real service: DescribeBackups hands them out, GET/HEAD
serve the set (a tar) or one database's dump with Range support, anything else is
refused, and ``rdsbackup backup download`` writes a verified copy."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import zstandard
from sqlalchemy import select

from rdsbackup.catalog.models import BackupSet
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import Manifest
from rdsbackup.service.links import LinkMaker, LinkSigner
from tests.fixtures.service import RDSBACKUP, Rds, signed_v1, wait_job


def _call(rds: Rds, action: str, **params: str) -> dict[str, Any]:
    resp = signed_v1(rds.endpoint, rds.key, action, params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _backup(rds: Rds, instance_id: str, **params: str) -> dict[str, Any]:
    """Run a backup; DescribeBackups' item for the set it made."""
    job_id = _call(rds, "CreateBackup", DBInstanceId=instance_id, **params)["BackupJobId"]
    job = wait_job(rds.endpoint, rds.key, instance_id, job_id)
    assert job["BackupStatus"] == "Finished", (job, rds.service.log_tail())
    found = _call(rds, "DescribeBackups", DBInstanceId=instance_id, BackupId=job["BackupId"])
    return dict(found["Items"]["Backup"][0])


@pytest.fixture(scope="module")
def maria_set(rds: Rds, mariadb: LocalServer) -> dict[str, Any]:
    instance_id = rds.service.register(mariadb, "acct1")
    return _backup(rds, instance_id, BackupMethod="Logical", DBName="analytics")


@pytest.fixture(scope="module")
def pg_set(rds: Rds, postgres: LocalServer) -> dict[str, Any]:
    instance_id = rds.service.register(postgres, "acct1")
    return _backup(rds, instance_id, BackupMethod="Logical", DBName="shop,analytics")


def _maker(rds: Rds) -> LinkMaker:
    """Links made the way the service makes them, with its own secret key."""
    secret = (rds.service.root / "state" / "secret.key").read_bytes().strip()
    return LinkMaker(LinkSigner(secret), f"http://{rds.endpoint}", f"http://{rds.endpoint}", 3600)


def _stored(rds: Rds, backup_id: str) -> tuple[str, list[str]]:
    """The set's storage prefix and object names, from the service's catalog."""
    catalog = rds.service.catalog()
    try:
        with catalog.read() as s:
            row = s.scalar(select(BackupSet).where(BackupSet.id == int(backup_id)))
            assert row is not None
            return row.storage_prefix, [o.name for o in row.objects]
    finally:
        catalog.dispose()


def _refused(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["Code"] == code
    assert {"RequestId", "HostId", "Message", "Recommend"} <= body.keys()


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


def test_a_set_downloads_as_one_verified_tar(rds: Rds, maria_set: dict[str, Any]) -> None:
    url = maria_set["BackupDownloadURL"]
    assert url.startswith(f"http://{rds.endpoint}/download/{maria_set['BackupId']}?Expires=")
    assert maria_set["BackupIntranetDownloadURL"].startswith(f"http://{rds.endpoint}/download/")
    assert "BackupDownloadLinkByDB" not in maria_set  # one dump for all databases
    expires = int(dict(p.split("=") for p in urlsplit(url).query.split("&"))["Expires"])
    assert 3500 < expires - time.time() <= 3600

    resp = httpx.get(url, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-tar"
    assert resp.headers["accept-ranges"] == "bytes"
    assert int(resp.headers["content-length"]) == len(resp.content)
    members = _members(resp.content)
    names = list(members)
    assert names[0] == "manifest.json"
    assert hashlib.sha256(members["manifest.json"]).hexdigest() == maria_set["Checksum"]
    manifest = Manifest.from_json(members["manifest.json"])
    assert names[1:] == [o.name for o in manifest.objects]
    for obj in manifest.objects:
        assert hashlib.sha256(members[obj.name]).hexdigest() == obj.sha256
        assert len(members[obj.name]) == obj.size

    listed = subprocess.run(
        ["tar", "-tf", "-"], input=resp.content, capture_output=True, check=True
    ).stdout
    assert listed.decode().splitlines() == names  # GNU tar reads it too

    head = httpx.head(url, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(resp.content))
    assert httpx.get(url, timeout=60).content == resp.content  # deterministic


def test_range_requests(maria_set: dict[str, Any]) -> None:
    url = maria_set["BackupDownloadURL"]
    whole = httpx.get(url, timeout=60).content
    size = len(whole)
    for header, start, stop in [
        ("bytes=0-9", 0, 10),
        ("bytes=500-1600", 500, 1601),  # across the first header and into the manifest
        (f"bytes={size // 3}-{size // 3 * 2}", size // 3, size // 3 * 2 + 1),
        ("bytes=-100", size - 100, size),
        (f"bytes={size - 5}-", size - 5, size),
        (f"bytes=10-{size + 99}", 10, size),
    ]:
        resp = httpx.get(url, headers={"Range": header}, timeout=60)
        assert resp.status_code == 206, (header, resp.text)
        assert resp.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        assert resp.headers["content-length"] == str(stop - start)
        assert resp.content == whole[start:stop], header
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        resp = httpx.get(url, headers={"Range": header}, timeout=30)
        _refused(resp, 416, "InvalidRange")
        assert resp.headers["content-range"] == f"bytes */{size}"
    head = httpx.head(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert head.status_code == 206 and head.headers["content-length"] == "100"


def test_altered_expired_and_foreign_links_are_refused(
    rds: Rds, maria_set: dict[str, Any], pg_set: dict[str, Any]
) -> None:
    url = urlsplit(maria_set["BackupDownloadURL"])
    base = f"http://{rds.endpoint}"
    query = dict(p.split("=") for p in url.query.split("&"))

    def get(path: str, **changes: str) -> httpx.Response:
        return httpx.get(base + path, params={**query, **changes}, timeout=30)

    flipped = query["Signature"][:-1] + ("0" if query["Signature"][-1] != "0" else "1")
    _refused(get(url.path, Signature=flipped), 403, "Forbidden.DownloadLink")
    _refused(get(url.path, Expires=str(int(query["Expires"]) + 60)), 403, "Forbidden.DownloadLink")
    _refused(get(url.path, Set="0" * 16), 403, "Forbidden.DownloadLink")
    _refused(get(f"/download/{pg_set['BackupId']}"), 403, "Forbidden.DownloadLink")
    _refused(get(url.path + "/manifest.json"), 403, "Forbidden.DownloadLink")
    _refused(httpx.get(base + url.path, timeout=30), 403, "Forbidden.DownloadLink")
    _refused(httpx.post(url.geturl(), timeout=30), 400, "UnsupportedHTTPMethod")

    maker = _maker(rds)
    checksum, backup_id = maria_set["Checksum"], int(maria_set["BackupId"])
    expired = maker.url(maker.target(backup_id, checksum, expires=int(time.time()) - 5))
    resp = httpx.get(expired, timeout=30)
    _refused(resp, 403, "Forbidden.DownloadLink")
    assert "expired" in resp.json()["Message"]
    assert httpx.head(expired, timeout=30).status_code == 403
    # Validly signed, but naming what is not there:
    _refused(
        httpx.get(maker.url(maker.target(10**9, checksum))), 404, "InvalidBackupSetID.NotFound"
    )
    stale = maker.url(maker.target(backup_id, "f" * 64))  # a set that once had this id
    _refused(httpx.get(stale, timeout=30), 404, "InvalidBackupSetID.NotFound")
    other = maker.url(maker.target(backup_id, checksum, "db/shop.dump.zst"))
    _refused(httpx.get(other, timeout=30), 404, "InvalidBackupObject.NotFound")
    # A link the service made itself works, with a fresh expiry:
    assert httpx.get(maker.url(maker.target(backup_id, checksum)), timeout=60).status_code == 200


def _raw_get(rds: Rds, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (httpx would normalise the dot segments)."""
    conn = http.client.HTTPConnection(rds.endpoint.split(":")[0], rds.service.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_nothing_outside_the_set_can_be_reached(rds: Rds, maria_set: dict[str, Any]) -> None:
    secret = "outside-the-storage-" + str(time.time())
    outside = rds.service.root / "state" / "outside.txt"
    outside.write_text(secret)
    maker = _maker(rds)
    backup_id, checksum = int(maria_set["BackupId"]), maria_set["Checksum"]
    query = urlsplit(maria_set["BackupDownloadURL"]).query
    prefix, _ = _stored(rds, maria_set["BackupId"])
    depth = len(prefix.strip("/").split("/"))
    climb = "../" * depth
    paths = [
        f"/download/{backup_id}/../../etc/passwd?{query}",
        f"/download/{backup_id}/%2e%2e/%2e%2e/etc/passwd?{query}",
        f"/download/%2e%2e/%2e%2e/etc/passwd?{query}",
        f"/download/{backup_id}/{climb}outside.txt?{query}",
        f"/download/{backup_id}/..%2f..%2f..%2foutside.txt?{query}",
    ]
    for name in (
        f"{climb}outside.txt",
        f"{climb}../catalog.db",
        f"/{outside}",
        f"{prefix}manifest.json",
        "",
        ".",
    ):  # signed with the real key: only the set's records decide
        link = urlsplit(maker.url(maker.target(backup_id, checksum, name)))
        paths.append(f"{link.path}?{link.query}")
    for path in paths:
        status, body = _raw_get(rds, path)
        assert status in (403, 404), (path, status)
        assert secret.encode() not in body and b"root:" not in body and b"SQLite" not in body
        assert json.loads(body)["Code"] in (
            "Forbidden.DownloadLink",
            "InvalidBackupObject.NotFound",
            "InvalidBackupSetID.NotFound",
        )


def test_per_database_links_serve_that_database(rds: Rds, pg_set: dict[str, Any]) -> None:
    links = pg_set["BackupDownloadLinkByDB"]["BackupDownloadLinkByDB"]
    assert sorted(link["DataBase"] for link in links) == ["analytics", "shop"]
    shop = next(link for link in links if link["DataBase"] == "shop")
    assert shop["IntranetDownloadLink"].startswith(f"http://{rds.endpoint}/download/")
    assert urlsplit(shop["DownloadLink"]).path.endswith("/db/shop.dump.zst")

    whole = _members(httpx.get(pg_set["BackupDownloadURL"], timeout=60).content)
    manifest = Manifest.from_json(whole["manifest.json"])
    resp = httpx.get(shop["DownloadLink"], timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zstd"
    assert "shop.dump.zst" in resp.headers["content-disposition"]
    assert resp.content == whole["db/shop.dump.zst"]
    stored = manifest.object("db/shop.dump.zst")
    assert hashlib.sha256(resp.content).hexdigest() == stored.sha256
    dump = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(resp.content)).read(5)
    assert dump == b"PGDMP"  # pg_dump's custom format
    head = httpx.get(shop["DownloadLink"], headers={"Range": "bytes=0-3"}, timeout=30)
    assert head.status_code == 206 and head.content == b"\x28\xb5\x2f\xfd"  # zstd magic


def test_cli_download_writes_a_verified_copy(
    rds: Rds, maria_set: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    result = json.loads(
        rds.service.cli("backup", "download", maria_set["BackupId"], "--out", str(out))
    )
    assert result["BackupId"] == int(maria_set["BackupId"])
    manifest_bytes = (out / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == maria_set["Checksum"]
    for obj in Manifest.from_json(manifest_bytes).objects:
        assert hashlib.sha256((out / obj.name).read_bytes()).hexdigest() == obj.sha256


def test_cli_download_fails_loudly_on_a_corrupt_object(
    rds: Rds, fresh_instance: Callable[..., str], tmp_path: Path
) -> None:
    item = _backup(rds, fresh_instance("PostgreSQL"), BackupMethod="Logical", DBName="shop")
    prefix, names = _stored(rds, item["BackupId"])
    victim = next(name for name in names if name.startswith("db/"))
    stored = rds.service.root / "state" / "backups" / prefix / victim
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))

    out = subprocess.run(
        [RDSBACKUP, "backup", "download", item["BackupId"], "--out", str(tmp_path / "copy")],
        env=rds.service.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode != 0, out.stdout
    assert f"{victim}: sha256 does not match the manifest" in out.stderr, out.stderr
