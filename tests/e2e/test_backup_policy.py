"""DescribeBackupPolicy / ModifyBackupPolicy against the real service and real servers:
the official SDK (alibabacloud_rds20140815) round trip with its types, every error code
with its HTTP status, XML, and Terraform's ``alicloud_db_backup_policy`` replayed call by
call (create/update, read, delete) as its provider sends them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
from alibabacloud_rds20140815 import models
from alibabacloud_tea_openapi.exceptions import ClientException

from rdsbackup.catalog.models import BackupSet
from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import Key, Rds, signed_v1, tea_client, wait_job

NEXT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def call(rds: Rds, action: str, key: Key | None = None, /, **params: str) -> httpx.Response:
    return signed_v1(rds.endpoint, key or rds.key, action, params)


def form_call(rds: Rds, action: str, /, **params: str) -> httpx.Response:
    """As Terraform's provider sends: POST, the action's parameters in a form body."""
    return signed_v1(rds.endpoint, rds.key, action, params, form=True)


def policy(rds: Rds, instance_id: str) -> dict[str, Any]:
    resp = call(rds, "DescribeBackupPolicy", DBInstanceId=instance_id)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def expect(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["Code"] == code, body
    assert body["RequestId"] and body["Message"]
    return str(body["Message"])


def format_int(value: object) -> int:
    """Terraform's ``formatInt``: a JSON number or a numeric string; anything else (a
    bool) panics the provider."""
    if isinstance(value, bool):
        raise AssertionError(f"Not support type bool: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    assert isinstance(value, str), value
    return int(value)


def assert_terraform_reads(body: Mapping[str, Any]) -> None:
    """The provider's Read: its Go type assertions and formatInt calls must all hold."""
    assert isinstance(body["PreferredBackupPeriod"], str)  # .(string) then strings.Split
    assert isinstance(body["EnableIncrementDataBackup"], bool)  # .(bool), unconditional
    assert body["EnableBackupLog"] in ("1", "0")  # compared with the string "1"
    assert body["BackupLog"] in ("Enable", "Disabled")
    for name in (
        "BackupRetentionPeriod",
        "LogBackupRetentionPeriod",
        "LocalLogRetentionHours",
        "LocalLogRetentionSpace",
        "ArchiveBackupRetentionPeriod",
        "ArchiveBackupKeepCount",
        "LogBackupLocalRetentionNumber",
    ):
        format_int(body[name])
    for name in (
        "PreferredBackupTime",
        "HighSpaceUsageProtection",
        "CompressType",
        "Category",
        "BackupInterval",
        "ReleasedKeepPolicy",
        "ArchiveBackupKeepPolicy",
    ):
        assert isinstance(body[name], str), name


def assert_next_time_in_window(body: Mapping[str, Any]) -> None:
    text = body["PreferredNextBackupTime"]
    assert NEXT_TIME.fullmatch(text), text
    start = datetime.strptime(text, "%Y-%m-%dT%H:%MZ")
    assert WEEKDAYS[start.weekday()] in body["PreferredBackupPeriod"].split(",")
    opens = datetime.strptime(body["PreferredBackupTime"][:5], "%H:%M").time()
    window = datetime.combine(start.date(), opens)
    assert window <= start < window + timedelta(hours=1), (text, body["PreferredBackupTime"])
    assert start >= datetime.utcnow() - timedelta(minutes=1)


# -- SDK -----------------------------------------------------------------------------------


def test_describe_defaults_with_the_sdk(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("MariaDB")
    client = tea_client(rds.endpoint, rds.key)
    resp = client.describe_backup_policy(
        models.DescribeBackupPolicyRequest(dbinstance_id=instance_id)
    )
    sdk = resp.body
    assert sdk.backup_retention_period == 7 and sdk.log_backup_retention_period == 7
    assert sdk.preferred_backup_time == "02:00Z-03:00Z"
    assert sdk.preferred_backup_period == "Tuesday,Thursday,Saturday"
    assert sdk.backup_log == "Disabled" and sdk.enable_backup_log == "0"
    assert sdk.enable_increment_data_backup is False
    assert sdk.backup_method == "Physical" and sdk.category == "Standard"
    assert sdk.compress_type == "4" and sdk.backup_interval == "-1"
    assert sdk.high_space_usage_protection == "Enable"
    assert sdk.local_log_retention_hours == 18 and sdk.local_log_retention_space == "30"
    assert sdk.log_backup_local_retention_number == 60
    assert sdk.released_keep_policy == "None" and sdk.archive_backup_keep_policy == "ByMonth"
    assert sdk.request_id
    raw = sdk.to_map()
    assert_terraform_reads(raw)
    assert_next_time_in_window(raw)
    assert policy(rds, instance_id)["Compression"] == "zstd"  # extension: what code 4 means


def test_modify_then_describe_round_trip_with_sdk_types(
    rds: Rds, fresh_instance: Callable[..., str]
) -> None:
    instance_id = fresh_instance("MariaDB")
    client = tea_client(rds.endpoint, rds.key)
    data = client.modify_backup_policy(
        models.ModifyBackupPolicyRequest(
            dbinstance_id=instance_id,
            backup_policy_mode="DataBackupPolicy",
            preferred_backup_time="13:00Z-14:00Z",
            preferred_backup_period="Wednesday,Monday,Friday",
            backup_retention_period="30",
            compress_type="1",
            archive_backup_retention_period="365",
            archive_backup_keep_policy="ByWeek",
            archive_backup_keep_count=2,
            released_keep_policy="Lastest",
            enable_increment_data_backup=True,
            inc_backup_interval=120,
            backup_interval="60",
            category="Flash",
        )
    ).body
    assert data.dbinstance_id == instance_id
    raw = data.to_map()
    assert raw["DBInstanceID"] == instance_id and raw["CompressType"] == "1"
    assert raw["EnableIncrementDataBackup"] is True and raw["IncBackupInterval"] == 120
    assert isinstance(raw["LocalLogRetentionHours"], int)
    assert isinstance(raw["LocalLogRetentionSpace"], str)
    log = client.modify_backup_policy(
        models.ModifyBackupPolicyRequest(
            dbinstance_id=instance_id,
            backup_policy_mode="LogBackupPolicy",
            enable_backup_log="True",
            log_backup_retention_period="20",
            local_log_retention_hours="24",
            local_log_retention_space="40",
            high_space_usage_protection="Disable",
            log_backup_local_retention_number=-1,
        )
    ).body
    assert log.enable_backup_log == "1" and log.high_space_usage_protection == "Disable"
    assert log.local_log_retention_hours == 24 and log.local_log_retention_space == "40"
    assert log.log_backup_local_retention_number == -1
    sdk = client.describe_backup_policy(
        models.DescribeBackupPolicyRequest(dbinstance_id=instance_id)
    ).body
    assert sdk.preferred_backup_period == "Monday,Wednesday,Friday"
    assert sdk.preferred_backup_time == "13:00Z-14:00Z"
    assert sdk.backup_retention_period == 30 and sdk.log_backup_retention_period == 20
    assert (sdk.compress_type, sdk.category, sdk.backup_interval) == ("1", "Flash", "60")
    assert sdk.archive_backup_retention_period == "365"
    assert (sdk.archive_backup_keep_policy, sdk.archive_backup_keep_count) == ("ByWeek", "2")
    assert sdk.released_keep_policy == "Lastest"
    assert sdk.enable_increment_data_backup is True
    assert (sdk.backup_log, sdk.enable_backup_log) == ("Enable", "1")
    assert sdk.high_space_usage_protection == "Disable"
    assert sdk.log_backup_local_retention_number == -1
    raw = sdk.to_map()
    assert policy(rds, instance_id)["Compression"] == "gzip"
    assert_terraform_reads(raw)
    assert_next_time_in_window(raw)
    attr = call(rds, "DescribeDBInstanceAttribute", DBInstanceId=instance_id).json()
    assert attr["Items"]["DBInstanceAttribute"][0]["DBInstanceStatus"] == "Running"


def test_the_sdk_raises_the_documented_error(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("PostgreSQL")
    client = tea_client(rds.endpoint, rds.key)
    with pytest.raises(ClientException) as caught:
        client.modify_backup_policy(
            models.ModifyBackupPolicyRequest(
                dbinstance_id=instance_id,
                backup_policy_mode="DataBackupPolicy",
                preferred_backup_time="02:00Z-03:00Z",
                preferred_backup_period="Monday,Friday",
                backup_retention_period="731",
            )
        )
    assert caught.value.code == "InvalidBackupRetentionPeriod.Malformed"
    assert caught.value.status_code == 400
    assert policy(rds, instance_id)["PreferredBackupPeriod"] == "Tuesday,Thursday,Saturday"


def test_booleans_in_any_case_and_empty_values(
    rds: Rds, fresh_instance: Callable[..., str]
) -> None:
    instance_id = fresh_instance("MariaDB")
    log = {"DBInstanceId": instance_id, "BackupPolicyMode": "LogBackupPolicy"}
    for value, shown in (
        ("True", "1"),
        ("false", "0"),
        ("TRUE", "1"),
        ("0", "0"),
        ("1", "1"),
        ("False", "0"),
        ("true", "1"),
    ):
        resp = call(rds, "ModifyBackupPolicy", **log, EnableBackupLog=value)
        assert resp.status_code == 200, resp.text
        assert resp.json()["EnableBackupLog"] == shown
        assert policy(rds, instance_id)["EnableBackupLog"] == shown
    data = {
        "DBInstanceId": instance_id,
        "BackupPolicyMode": "DataBackupPolicy",
        "PreferredBackupTime": "02:00Z-03:00Z",
        "PreferredBackupPeriod": "Monday,Friday",
        "BackupRetentionPeriod": "7",
    }
    assert call(rds, "ModifyBackupPolicy", **data, CompressType="0").status_code == 200
    resp = form_call(rds, "ModifyBackupPolicy", **data, CompressType="", Category="")
    assert resp.status_code == 200, resp.text
    after = policy(rds, instance_id)
    assert (after["CompressType"], after["Category"]) == ("0", "Standard")


def test_xml_responses_parse(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    instance_id = fresh_instance("MariaDB")
    xml = {"Format": "XML"}
    resp = signed_v1(
        rds.endpoint,
        rds.key,
        "ModifyBackupPolicy",
        {
            "DBInstanceId": instance_id,
            "BackupPolicyMode": "LogBackupPolicy",
            "EnableBackupLog": "1",
        },
        overrides=xml,
    )
    assert resp.status_code == 200, resp.text
    root = ET.fromstring(resp.content)
    assert root.tag == "ModifyBackupPolicyResponse"
    assert root.findtext("DBInstanceID") == instance_id
    assert root.findtext("EnableBackupLog") == "1"
    assert root.findtext("EnableIncrementDataBackup") == "false"
    resp = signed_v1(
        rds.endpoint,
        rds.key,
        "DescribeBackupPolicy",
        {"DBInstanceId": instance_id},
        overrides=xml,
    )
    root = ET.fromstring(resp.content)
    assert root.tag == "DescribeBackupPolicyResponse"
    assert root.findtext("PreferredBackupPeriod") == "Tuesday,Thursday,Saturday"
    assert root.findtext("BackupRetentionPeriod") == "7"
    assert root.findtext("BackupLog") == "Enable"
    assert NEXT_TIME.fullmatch(root.findtext("PreferredNextBackupTime") or "")
    assert root.findtext("RequestId")
    error = signed_v1(
        rds.endpoint,
        rds.key,
        "ModifyBackupPolicy",
        {"DBInstanceId": instance_id, "BackupPolicyMode": "LogBackupPolicy"},
        overrides=xml,
    )
    assert error.status_code == 400
    assert ET.fromstring(error.content).findtext("Code") == "MissingParameter"


# -- every error code ----------------------------------------------------------------------

DATA = {
    "BackupPolicyMode": "DataBackupPolicy",
    "PreferredBackupTime": "02:00Z-03:00Z",
    "PreferredBackupPeriod": "Monday,Friday",
    "BackupRetentionPeriod": "30",
}

LOG_ON = {"BackupPolicyMode": "LogBackupPolicy", "EnableBackupLog": "1"}
BAD = "InvalidParameter"
RETENTION = "InvalidBackupRetentionPeriod.Malformed"
TIME = "InvalidPreferredBackupTime.Format"
PERIOD = "InvalidPreferredBackupPeriod.Malformed"

ERRORS: list[tuple[dict[str, str], int, str, str]] = [
    # parameters, HTTP status, Code, words of the message
    ({"BackupRetentionPeriod": "6"}, 400, RETENTION, "7 and 730"),
    ({"BackupRetentionPeriod": "731"}, 400, RETENTION, "730"),
    ({"BackupRetentionPeriod": "ten"}, 400, RETENTION, "integer"),
    ({"PreferredBackupTime": "02:00Z-04:00Z"}, 400, TIME, "one hour"),
    ({"PreferredBackupTime": "2am"}, 400, TIME, "HH:mmZ"),
    ({"PreferredBackupPeriod": "Monday"}, 400, PERIOD, "two"),
    ({"PreferredBackupPeriod": "Monday,Someday"}, 400, PERIOD, "Sunday"),
    ({"ReleasedKeepPolicy": "Latest"}, 400, "InvalidReleasedKeepPolicy.Format", "Lastest"),
    ({"BackupMethod": "Incremental"}, 400, "InvalidBackupMethod.ValueNotSupport", "Snapshot"),
    ({"CompressType": "3"}, 400, BAD, '"CompressType"'),
    ({"BackupInterval": "45"}, 400, BAD, '"BackupInterval"'),
    ({"Category": "Basic"}, 400, BAD, '"Category"'),
    ({"ArchiveBackupRetentionPeriod": "10"}, 400, BAD, "1095"),
    ({"ArchiveBackupKeepPolicy": "ByWeek", "ArchiveBackupKeepCount": "8"}, 400, BAD, "1 and 7"),
    ({"EnableIncrementDataBackup": "yes"}, 400, BAD, "True, False, 1, 0"),
    ({"LogBackupRetentionPeriod": "31"}, 400, BAD, "30 days"),
    ({"BackupPolicyMode": "FullPolicy"}, 400, BAD, "LogBackupPolicy"),
    ({"PreferredBackupTime": ""}, 400, "MissingParameter", '"PreferredBackupTime"'),
    ({**LOG_ON, "LocalLogRetentionHours": "169"}, 400, BAD, "168"),
    ({**LOG_ON, "LocalLogRetentionSpace": "51"}, 400, BAD, "50"),
    ({**LOG_ON, "HighSpaceUsageProtection": "On"}, 400, BAD, "Disable"),
    ({**LOG_ON, "LogBackupLocalRetentionNumber": "5"}, 400, BAD, "-1"),
    ({"BackupPolicyMode": "LogBackupPolicy"}, 400, "MissingParameter", '"EnableBackupLog"'),
]


@pytest.mark.parametrize(
    ("params", "status", "code", "word"), ERRORS, ids=[e[2] + ":" + ",".join(e[0]) for e in ERRORS]
)
def test_every_documented_error_with_its_status_changes_nothing(
    rds: Rds, params: dict[str, str], status: int, code: str, word: str
) -> None:
    instance_id = rds.postgres_id
    before = policy(rds, instance_id)
    message = expect(
        call(rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **{**DATA, **params}),
        status,
        code,
    )
    assert word in message, message
    after = policy(rds, instance_id)
    assert {k: v for k, v in after.items() if k != "RequestId"} == {
        k: v for k, v in before.items() if k != "RequestId"
    }


def test_instance_errors(rds: Rds, fresh_instance: Callable[..., str]) -> None:
    for action in ("DescribeBackupPolicy", "ModifyBackupPolicy"):
        expect(call(rds, action, **DATA), 400, "MissingParameter")
        expect(
            call(rds, action, DBInstanceId="rm-nosuchinstance", **DATA),
            400,
            "InvalidDBInstanceId.NotFound",
        )
        expect(  # another account's instance is not there for this key
            call(rds, action, rds.other_key, DBInstanceId=rds.mariadb_id, **DATA),
            400,
            "InvalidDBInstanceId.NotFound",
        )
    expect(
        call(rds, "DescribeBackupPolicy", DBInstanceId=rds.mariadb_id, ReleasedKeepPolicy="x"),
        400,
        "InvalidReleasedKeepPolicy.Format",
    )
    instance_id = fresh_instance("MariaDB")
    rds.service.cli("instance", "set", instance_id, "--lock-mode", "ManualLock")
    expect(
        call(rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **DATA),
        403,
        "IncorrectDBInstanceState",
    )
    assert policy(rds, instance_id)["BackupRetentionPeriod"] == 7  # reading still works
    rds.service.cli("instance", "set", instance_id, "--lock-mode", "Unlock")
    resp = call(rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **DATA)
    assert resp.status_code == 200, resp.text


def test_backup_method_must_suit_the_server(rds: Rds, mariadb: LocalServer) -> None:
    """A registered server whose data directory is not on this machine: Physical and
    Snapshot backups cannot be taken of it, Logical ones can."""
    password_file = rds.service.root / "pw-policy"
    password_file.write_text(mariadb.admin_password)
    try:
        out = rds.service.cli_json(
            "instance", "add", "--engine", "MariaDB", "--host", "127.0.0.1",
            "--port", str(mariadb.port), "--user", mariadb.admin_user,
            "--password-file", str(password_file), "--account", "acct1",
        )  # fmt: skip
    finally:
        password_file.unlink()
    instance_id = str(out["DBInstanceId"])
    for method in ("Physical", "Snapshot"):
        message = expect(
            call(rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **DATA, BackupMethod=method),
            400,
            "InvalidBackupMethod.ValueNotSupport",
        )
        assert "data directory" in message
    resp = call(rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **DATA, BackupMethod="Logical")
    assert resp.status_code == 200, resp.text
    assert policy(rds, instance_id)["BackupMethod"] == "Logical"


# -- Terraform ----------------------------------------------------------------------------


class Terraform:
    """What ``alicloud_db_backup_policy`` sends (provider @81c43b67: resource_alicloud_db_
    backup_policy.go, service_alicloud_rds.go ModifyDBBackupPolicy): POST, form body."""

    def __init__(self, rds: Rds, instance_id: str) -> None:
        self.rds = rds
        self.instance_id = instance_id
        self.calls: list[str] = []

    def rpc(self, action: str, **body: str) -> dict[str, Any]:
        self.calls.append(action)
        resp = form_call(self.rds, action, **body)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait_running(self, timeout: float = 30) -> None:
        """WaitForDBInstance(Running): DescribeDBInstanceAttribute until the status is
        Running in any case (every 5 s in the provider)."""
        deadline = time.monotonic() + timeout
        while True:
            attr = self.attribute()
            if attr["DBInstanceStatus"].lower() == "running":
                return
            assert time.monotonic() < deadline, attr
            time.sleep(0.5)

    def attribute(self) -> dict[str, Any]:
        body = self.rpc(
            "DescribeDBInstanceAttribute",
            RegionId="cn-hangzhou",
            DBInstanceId=self.instance_id,
            SourceIp="",
        )
        return dict(body["Items"]["DBInstanceAttribute"][0])

    def update(self, config: Mapping[str, Any]) -> None:
        self.wait_running()
        attr = self.attribute()
        engine, storage = attr["Engine"], attr["DBInstanceStorageType"]
        mysql_local = engine == "MySQL" and storage == "local_ssd"
        data = {
            "RegionId": "cn-hangzhou",
            "DBInstanceId": self.instance_id,
            "PreferredBackupPeriod": ",".join(config["preferred_backup_period"]),
            "PreferredBackupTime": config["preferred_backup_time"],
            "BackupRetentionPeriod": str(config["backup_retention_period"]),
            "CompressType": "",
            "BackupPolicyMode": "DataBackupPolicy",
            "SourceIp": "",
            "ReleasedKeepPolicy": "",
        }
        if mysql_local:
            data |= {
                "EnableIncrementDataBackup": "false",
                "ArchiveBackupRetentionPeriod": "0",
                "ArchiveBackupKeepCount": "1",
                "ArchiveBackupKeepPolicy": "0",
            }
        else:
            data["Category"] = ""
        if engine == "PostgreSQL" and storage != "local_ssd" and attr["Category"] != "Basic":
            data["BackupInterval"] = "-1"
        self.rpc("ModifyBackupPolicy", **data)
        self.wait_running()
        log_days = min(config["log_backup_retention_period"], config["backup_retention_period"])
        self.rpc(
            "ModifyBackupPolicy",
            RegionId="cn-hangzhou",
            DBInstanceId=self.instance_id,
            EnableBackupLog="1" if config["enable_backup_log"] else "0",
            LocalLogRetentionHours="",
            LocalLogRetentionSpace="",
            HighSpaceUsageProtection="Enable",
            BackupPolicyMode="LogBackupPolicy",
            LogBackupRetentionPeriod=str(log_days),
            LogBackupLocalRetentionNumber="60",
            SourceIp="",
        )
        self.wait_running()

    def read(self) -> dict[str, Any]:
        body = self.rpc(
            "DescribeBackupPolicy",
            RegionId="cn-hangzhou",
            DBInstanceId=self.instance_id,
            SourceIp="",
        )
        self.attribute()
        assert_terraform_reads(body)
        return body

    def delete(self) -> None:
        self.wait_running()
        attr = self.attribute()
        body = {
            "RegionId": "cn-hangzhou",
            "DBInstanceId": self.instance_id,
            "PreferredBackupPeriod": "Tuesday,Thursday,Saturday",
            "BackupRetentionPeriod": "7",
            "PreferredBackupTime": "02:00Z-03:00Z",
            "EnableBackupLog": "1",
            "LogBackupRetentionPeriod": "7",
            "SourceIp": "",
        }
        if attr["Engine"] == "MySQL" and attr["DBInstanceStorageType"] == "local_ssd":
            body |= {
                "ArchiveBackupRetentionPeriod": "0",
                "ArchiveBackupKeepCount": "1",
                "ArchiveBackupKeepPolicy": "ByMonth",
            }
        self.rpc("ModifyBackupPolicy", **body)
        self.wait_running()


@pytest.mark.parametrize("engine", ["MariaDB", "PostgreSQL"])
def test_terraform_alicloud_db_backup_policy_flow(
    rds: Rds, fresh_instance: Callable[..., str], engine: str
) -> None:
    instance_id = fresh_instance(engine)
    tf = Terraform(rds, instance_id)
    config: dict[str, Any] = {
        "preferred_backup_period": ["Wednesday", "Monday", "Saturday"],  # a Go set: any order
        "preferred_backup_time": "20:00Z-21:00Z",
        "backup_retention_period": 14,
        "log_backup_retention_period": 30,  # larger: the provider sends the data retention
        "enable_backup_log": True,
    }
    tf.update(config)
    state = tf.read()
    assert set(state["PreferredBackupPeriod"].split(",")) == set(config["preferred_backup_period"])
    assert state["PreferredBackupTime"] == "20:00Z-21:00Z"
    assert format_int(state["BackupRetentionPeriod"]) == 14
    assert format_int(state["LogBackupRetentionPeriod"]) == 14
    assert state["EnableBackupLog"] == "1" and state["BackupLog"] == "Enable"
    assert state["EnableIncrementDataBackup"] is False
    assert state["HighSpaceUsageProtection"] == "Enable"
    assert format_int(state["LogBackupLocalRetentionNumber"]) == 60
    assert_next_time_in_window(state)
    assert {k: v for k, v in tf.read().items() if k != "RequestId"} == {
        k: v for k, v in state.items() if k != "RequestId"
    }, "a second read shows no drift"

    config |= {"backup_retention_period": 7, "log_backup_retention_period": 7}
    config["enable_backup_log"] = False
    tf.update(config)  # lowering both: the data call comes first
    state = tf.read()
    assert format_int(state["BackupRetentionPeriod"]) == 7
    assert format_int(state["LogBackupRetentionPeriod"]) == 7
    assert state["EnableBackupLog"] == "0"

    tf.delete()
    reset = tf.read()
    assert reset["PreferredBackupPeriod"] == "Tuesday,Thursday,Saturday"
    assert reset["PreferredBackupTime"] == "02:00Z-03:00Z"
    assert format_int(reset["BackupRetentionPeriod"]) == 7
    assert format_int(reset["LogBackupRetentionPeriod"]) == 7
    assert reset["EnableBackupLog"] == "1"
    assert tf.calls.count("ModifyBackupPolicy") == 5
    assert tf.attribute()["DBInstanceStatus"] == "Running"


def test_the_policys_released_keep_policy_decides_a_delete_that_does_not_say(
    rds: Rds, fresh_instance: Callable[..., str]
) -> None:
    instance_id = fresh_instance("MariaDB")
    job_id = call(rds, "CreateBackup", DBInstanceId=instance_id, BackupMethod="Logical").json()[
        "BackupJobId"
    ]
    job = wait_job(rds.endpoint, rds.key, instance_id, job_id)
    assert job["BackupStatus"] == "Finished", job
    resp = call(
        rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **DATA, ReleasedKeepPolicy="All"
    )
    assert resp.status_code == 200, resp.text
    assert call(rds, "DeleteDBInstance", DBInstanceId=instance_id).status_code == 200
    expect(
        call(rds, "DescribeBackupPolicy", DBInstanceId=instance_id),
        400,
        "InvalidDBInstanceId.NotFound",
    )
    catalog = rds.service.catalog()
    try:
        with catalog.read() as s:
            kept = s.get(BackupSet, int(job["BackupId"]))
            assert kept is not None and kept.status == "Success"
    finally:
        catalog.dispose()


@pytest.mark.parametrize("engine", ["MariaDB", "PostgreSQL"])
def test_every_method_of_a_server_with_its_data_directory_here(
    rds: Rds, fresh_instance: Callable[..., str], engine: str
) -> None:
    instance_id = fresh_instance(engine)
    for method in ("Snapshot", "Logical", "Physical"):
        resp = call(
            rds, "ModifyBackupPolicy", DBInstanceId=instance_id, **DATA, BackupMethod=method
        )
        assert resp.status_code == 200, resp.text
        assert policy(rds, instance_id)["BackupMethod"] == method


def test_the_extensions_gfs_counts_and_encryption_switch(
    rds: Rds, fresh_instance: Callable[..., str]
) -> None:
    instance_id = fresh_instance("MariaDB")
    before = policy(rds, instance_id)
    assert (before["BackupEncryption"], before["EncryptionKey"]) == ("Disabled", "")
    assert (before["GfsWeeklyCount"], before["GfsMonthlyCount"], before["GfsYearlyCount"]) == (
        0,
        0,
        0,
    )
    resp = call(
        rds,
        "ModifyBackupPolicy",
        DBInstanceId=instance_id,
        BackupPolicyMode="DataBackupPolicy",
        PreferredBackupTime="02:00Z-03:00Z",
        PreferredBackupPeriod="Monday,Thursday",
        BackupRetentionPeriod="7",
        GfsMonthlyCount="12",
        GfsYearlyCount="5",
    )
    assert resp.status_code == 200, resp.text
    refused = call(
        rds,
        "ModifyBackupPolicy",
        DBInstanceId=instance_id,
        BackupPolicyMode="DataBackupPolicy",
        PreferredBackupTime="02:00Z-03:00Z",
        PreferredBackupPeriod="Monday,Thursday",
        BackupRetentionPeriod="7",
        GfsYearlyCount="101",
    )
    assert "GfsYearlyCount" in expect(refused, 400, "InvalidParameter")
    resp = call(rds, "EnableBackupEncryption", DBInstanceName=instance_id)
    assert resp.status_code == 200, resp.text
    after = policy(rds, instance_id)
    assert (after["GfsMonthlyCount"], after["GfsYearlyCount"]) == (12, 5)
    assert after["BackupEncryption"] == "Enabled"
    assert_terraform_reads(after)
