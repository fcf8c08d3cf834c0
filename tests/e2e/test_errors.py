"""Every row of the error catalogue over HTTP: the Code, the HTTP status, the message,
and that nothing changed in the catalog."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import httpx
import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkrds.request.v20140815.CreateBackupRequest import CreateBackupRequest
from sqlalchemy import func, select, update

from rdsbackup.catalog.models import BackupJob, BackupSet, Instance
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Key, Rds, core_call, signed_v1, tea_client


def counts(rds: Rds) -> tuple[int, int]:
    cat = rds.service.catalog()
    try:
        with cat.read() as s:
            return (
                s.scalar(select(func.count(BackupJob.id))) or 0,
                s.scalar(select(func.count(BackupSet.id))) or 0,
            )
    finally:
        cat.dispose()


@pytest.fixture
def unchanged(rds: Rds) -> Iterator[None]:
    before = counts(rds)
    yield
    assert counts(rds) == before


def expect(resp: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["Code"] == code, body
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["RequestId"] == resp.headers["x-acs-request-id"]
    assert body["RequestId"] == body["RequestId"].upper() and len(body["RequestId"]) == 36
    return dict(body)


def create(rds: Rds, key: Key | None = None, /, **params: str) -> httpx.Response:
    return signed_v1(rds.endpoint, key or rds.key, "CreateBackup", params)


@pytest.mark.usefixtures("unchanged")
class TestParameterErrors:
    def test_missing_parameter_names_it(self, rds: Rds) -> None:
        body = expect(create(rds, BackupMethod="Physical"), 400, "MissingParameter")
        assert '"DBInstanceId"' in body["Message"]

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"BackupMethod": "Fancy"}, "InvalidBackupMethod.ValueNotSupport"),
            ({"BackupType": "Differential"}, "BackupType.NotSupport"),
            ({"BackupStrategy": "table"}, "InvalidParameter"),
            ({"BackupRetentionPeriod": "3"}, "InvalidParameter"),
            ({"BackupRetentionPeriod": "seven"}, "InvalidParameter"),
            ({"BackupStrategy": "db"}, "InvalidParameter"),
            ({"DBName": "shop,", "BackupMethod": "Logical"}, "InvalidParameter"),
            ({"ClientToken": "x" * 65}, "InvalidParameter"),
        ],
    )
    def test_invalid_values(self, rds: Rds, params: dict[str, str], code: str) -> None:
        expect(create(rds, DBInstanceId=rds.mariadb_id, **params), 400, code)

    def test_db_strategy_refused_by_the_engine(self, rds: Rds) -> None:
        body = expect(
            create(
                rds,
                DBInstanceId=rds.postgres_id,
                BackupMethod="Physical",
                BackupStrategy="db",
                DBName="shop",
            ),
            400,
            "InvalidParameter",
        )
        assert "BackupStrategy" in body["Message"]

    def test_unknown_database(self, rds: Rds) -> None:
        expect(
            create(
                rds, DBInstanceId=rds.mariadb_id, BackupMethod="Logical", DBName="shop,no_such_db"
            ),
            400,
            "InvalidDBName.NotFound",
        )

    def test_describe_backups_parameters(self, rds: Rds) -> None:
        def describe(**params: str) -> httpx.Response:
            return signed_v1(
                rds.endpoint, rds.key, "DescribeBackups", {"DBInstanceId": rds.mariadb_id, **params}
            )

        expect(describe(StartTime="2024-01-01"), 400, "InvalidStartTime.Format")
        expect(describe(EndTime="yesterday"), 400, "InvalidEndTime.Format")
        expect(
            describe(StartTime="2024-01-02T00:00Z", EndTime="2024-01-01T00:00Z"),
            400,
            "InvalidParameterCombination",
        )
        expect(describe(PageSize="40"), 400, "InvalidParameter")
        expect(describe(PageNumber="0"), 400, "InvalidPageNumbers.Malformed")


@pytest.mark.usefixtures("unchanged")
class TestProtocolErrors:
    def test_unknown_action(self, rds: Rds) -> None:
        expect(signed_v1(rds.endpoint, rds.key, "CreateBakcup", {}), 404, "InvalidAction.NotFound")

    def test_wrong_version(self, rds: Rds) -> None:
        resp = signed_v1(
            rds.endpoint,
            rds.key,
            "CreateBackup",
            {"DBInstanceId": rds.mariadb_id},
            overrides={"Version": "2015-01-01"},
        )
        expect(resp, 400, "InvalidVersion")

    def test_unknown_access_key_through_tea_v3(self, rds: Rds) -> None:
        from alibabacloud_rds20140815 import models
        from alibabacloud_tea_openapi.exceptions import ClientException

        client = tea_client(rds.endpoint, Key("LTAInobodyhasthiskey", "x"))
        with pytest.raises(ClientException) as e:
            client.create_backup(models.CreateBackupRequest(dbinstance_id=rds.mariadb_id))
        assert e.value.code == "InvalidAccessKeyId.NotFound" and e.value.status_code == 404

    def test_disabled_key(self, rds: Rds) -> None:
        key = rds.service.add_key("acct1")
        rds.service.cli("key", "disable", key.access_key_id)
        resp = create(rds, key, DBInstanceId=rds.mariadb_id)
        expect(resp, 400, "InvalidAccessKeyId.Inactive")

    def test_bad_signature_tea_and_core(self, rds: Rds) -> None:
        from alibabacloud_rds20140815 import models
        from alibabacloud_tea_openapi.exceptions import ClientException

        wrong = Key(rds.key.access_key_id, "not-the-secret")
        with pytest.raises(ClientException) as e:
            tea_client(rds.endpoint, wrong).create_backup(
                models.CreateBackupRequest(dbinstance_id=rds.mariadb_id)
            )
        assert e.value.code == "SignatureDoesNotMatch" and e.value.status_code == 400
        assert "server string to sign is:ACS3-HMAC-SHA256\n" in e.value.message
        request = CreateBackupRequest()
        request.set_DBInstanceId(rds.mariadb_id)
        with pytest.raises(ServerException) as core_error:
            core_call(rds.endpoint, wrong, request)
        # The core SDK renames the error when the server's string-to-sign equals its own:
        # proof that our V1 canonicalisation is byte-for-byte the SDK's.
        assert core_error.value.get_error_code() == "InvalidAccessKeySecret"
        assert core_error.value.get_http_status() == 400

    @pytest.mark.parametrize("minutes", [-16, 16])
    def test_stale_or_future_timestamp(self, rds: Rds, minutes: int) -> None:
        stamp = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = signed_v1(
            rds.endpoint,
            rds.key,
            "DescribeBackups",
            {"DBInstanceId": rds.mariadb_id},
            overrides={"Timestamp": stamp},
        )
        expect(resp, 400, "InvalidTimeStamp.Expired")

    def test_reused_nonce(self, rds: Rds) -> None:
        nonce = {"SignatureNonce": "fixed-nonce-" + str(time.time())}
        params = {"DBInstanceId": rds.mariadb_id}
        assert (
            signed_v1(rds.endpoint, rds.key, "DescribeBackups", params, overrides=nonce).status_code
            == 200
        )
        resp = signed_v1(rds.endpoint, rds.key, "DescribeBackups", params, overrides=nonce)
        expect(resp, 400, "SignatureNonceUsed")

    def test_missing_signature_parts(self, rds: Rds) -> None:
        resp = signed_v1(
            rds.endpoint,
            rds.key,
            "DescribeBackups",
            {"DBInstanceId": "x"},
            overrides={"SignatureNonce": None},
        )
        assert '"SignatureNonce"' in expect(resp, 400, "MissingParameter")["Message"]

    def test_read_only_key_may_not_create(self, rds: Rds) -> None:
        key = rds.service.add_key("acct1", "--read-only")
        expect(create(rds, key, DBInstanceId=rds.mariadb_id), 403, "Forbidden.RAM")
        ok = signed_v1(rds.endpoint, key, "DescribeBackups", {"DBInstanceId": rds.mariadb_id})
        assert ok.status_code == 200

    def test_unsupported_http_method(self, rds: Rds) -> None:
        resp = httpx.put(f"http://{rds.endpoint}/?Format=JSON", timeout=10)
        expect(resp, 400, "UnsupportedHTTPMethod")


@pytest.mark.usefixtures("unchanged")
class TestInstanceErrors:
    def test_unknown_instance_and_other_accounts_instance(self, rds: Rds) -> None:
        expect(create(rds, DBInstanceId="rm-nosuchinstance"), 400, "InvalidDBInstanceId.NotFound")
        expect(
            create(rds, rds.other_key, DBInstanceId=rds.mariadb_id),
            400,
            "InvalidDBInstanceId.NotFound",
        )
        for action in (
            "DescribeBackups",
            "DescribeBackupTasks",
            "DescribeDBInstanceAttribute",
            "DescribeDatabases",
        ):
            resp = signed_v1(rds.endpoint, rds.other_key, action, {"DBInstanceId": rds.mariadb_id})
            expect(resp, 400, "InvalidDBInstanceId.NotFound")

    def test_resource_group_must_match(self, rds: Rds) -> None:
        expect(
            create(rds, DBInstanceId=rds.mariadb_id, ResourceGroupId="rg-other"),
            400,
            "InvalidDBInstanceId.NotFound",
        )

    def test_operation_denied_when_manual_backups_are_off(
        self, rds: Rds, mariadb: LocalServer
    ) -> None:
        instance_id = rds.service.register(mariadb, "acct1")
        rds.service.cli("instance", "set", instance_id, "--no-manual-backups")
        body = expect(create(rds, DBInstanceId=instance_id), 403, "OperationDenied.ApiForbidden")
        assert body["Message"] == "operation not permitted."

    def test_internal_error_is_logged_never_shown(self, rds: Rds, mariadb: LocalServer) -> None:
        instance_id = rds.service.register(mariadb, "acct1")
        cat = rds.service.catalog()
        with cat.write() as s:  # a password the service's key cannot decrypt
            s.execute(
                update(Instance)
                .where(Instance.id == instance_id)
                .values(password_ciphertext=b"gAAAAAbroken")
            )
        cat.dispose()
        body = expect(create(rds, DBInstanceId=instance_id), 500, "InternalError")
        assert "Traceback" not in body["Message"] and "gAAAA" not in body["Message"]
        assert body["RequestId"] in rds.service.log_tail(20000)


def test_instance_not_running_is_refused_then_recovers(rds: Rds, server_factory: object) -> None:
    server = server_factory("MariaDB")  # type: ignore[operator]
    server.start()
    instance_id = rds.service.register(server, "acct1")
    server.stop()
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline and status != "Unavailable":
        attr = signed_v1(
            rds.endpoint, rds.key, "DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}
        ).json()
        status = attr["Items"]["DBInstanceAttribute"][0]["DBInstanceStatus"]
        time.sleep(0.5)
    assert status == "Unavailable"
    assert attr["Items"]["DBInstanceAttribute"][0]["StatusReason"]
    before = counts(rds)
    expect(create(rds, DBInstanceId=instance_id), 403, "IncorrectDBInstanceState")
    assert counts(rds) == before
    server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and status != "Running":
        attr = signed_v1(
            rds.endpoint, rds.key, "DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}
        ).json()
        status = attr["Items"]["DBInstanceAttribute"][0]["DBInstanceStatus"]
        time.sleep(0.5)
    assert status == "Running"


class TestFormats:
    def test_xml_error_when_asked_and_by_default_for_v1(self, rds: Rds) -> None:
        for overrides in ({"Format": "xml"}, {"Format": None}):
            resp = signed_v1(rds.endpoint, rds.key, "CreateBackup", {}, overrides=overrides)
            assert resp.status_code == 400
            assert resp.headers["content-type"] == "text/xml;charset=utf-8"
            root = ET.fromstring(resp.content)
            assert root.tag == "Error" and root.findtext("Code") == "MissingParameter"
            assert root.findtext("RequestId") == resp.headers["x-acs-request-id"]

    def test_xml_success_lists(self, rds: Rds) -> None:
        resp = signed_v1(
            rds.endpoint,
            rds.key,
            "DescribeDBInstances",
            {"RegionId": "cn-hangzhou"},
            overrides={"Format": "XML"},
        )
        assert resp.status_code == 200
        root = ET.fromstring(resp.content)
        assert root.tag == "DescribeDBInstancesResponse"
        ids = [e.findtext("DBInstanceId") for e in root.iter("DBInstance")]
        assert rds.mariadb_id in ids and rds.postgres_id in ids

    def test_accept_header_picks_json_for_v1(self, rds: Rds) -> None:
        resp = signed_v1(rds.endpoint, rds.key, "CreateBackup", {}, overrides={"Format": None})
        assert resp.headers["content-type"].startswith("text/xml")
        base = f"http://{rds.endpoint}/?Action=CreateBackup"
        resp = httpx.get(base, headers={"Accept": "application/json"}, timeout=10)
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["Code"] == "MissingParameter"
