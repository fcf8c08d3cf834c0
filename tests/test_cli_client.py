"""The API-client commands (rdsbackup.cli_client) against the served service on the
memory engine: profiles, listings equal to the API's answers, progress, exit codes and
the one-line errors."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rdsbackup import cli_client
from rdsbackup.cli import app
from rdsbackup.service.fetch import FetchFailed, fetch_url
from tests.fixtures.memory import MemoryRds
from tests.fixtures.service import Key, signed_v1

runner = CliRunner()


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config" / "rdsbackup" / "profiles.toml"
    monkeypatch.setenv("RDSBACKUP_PROFILES", str(path))
    # tables as a wide terminal shows them; the console read COLUMNS when it was made
    monkeypatch.setattr(cli_client.out, "width", 200)
    for var in ("RDSBACKUP_PROFILE", "RDSBACKUP_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", raising=False)
    return path


def add_profile(name: str, endpoint: str, key: Key) -> Result:
    return runner.invoke(
        app,
        ["profile", "add", name, "--endpoint", endpoint, "--access-key-id", key.access_key_id],
        input=key.secret + "\n",
    )


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def cli_json(*args: str) -> Any:
    result = cli(*args, "--output", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def rds(memory_rds: MemoryRds, profiles: Path) -> MemoryRds:
    assert add_profile("default", memory_rds.endpoint, memory_rds.key).exit_code == 0
    return memory_rds


def test_profile_file_is_private_and_listing_hides_the_secret(
    memory_rds: MemoryRds, profiles: Path
) -> None:
    saved = add_profile("lab", f"http://{memory_rds.endpoint}/", memory_rds.key)
    assert saved.exit_code == 0, saved.stderr
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert stat.S_IMODE(profiles.parent.stat().st_mode) == 0o700
    listed = cli("profile", "list", "--output", "json")
    assert json.loads(listed.stdout) == [
        {
            "Profile": "lab",
            "Endpoint": f"http://{memory_rds.endpoint}/",
            "AccessKeyId": memory_rds.key.access_key_id,
            "RegionId": "cn-hangzhou",
        }
    ]
    assert memory_rds.key.secret not in listed.stdout + saved.stdout
    shown = cli("instance", "show", memory_rds.instance_id, "--profile", "lab", "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["DBInstanceAttribute"]["DBInstanceId"] == (
        memory_rds.instance_id
    )

    profiles.chmod(0o644)  # others may read the secret: refused, a usage error
    refused = cli("instance", "show", memory_rds.instance_id, "--profile", "lab")
    assert refused.exit_code == 2
    assert "chmod 600" in refused.stderr
    profiles.chmod(0o600)
    missing = cli("instance", "show", memory_rds.instance_id, "--profile", "nope")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: no profile 'nope'")


def test_environment_overrides_the_profile(rds: MemoryRds, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret")
    result = cli("backup", "list", rds.instance_id)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: SignatureDoesNotMatch (400): ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_backup_create_wait_then_list_and_show_answer_what_describe_backups_does(
    rds: MemoryRds,
) -> None:
    created = cli(
        "backup",
        "create",
        rds.instance_id,
        "--method",
        "Logical",
        "--wait",
        "--interval",
        "0.2",
        "-o",
        "json",
    )
    assert created.exit_code == 0, created.stderr
    backup = json.loads(created.stdout)
    assert backup["BackupStatus"] == "Success"
    assert backup["BackupMethod"] == "Logical"
    assert "Finished" in created.stderr  # the progress bar's last phase

    listed = cli_json("backup", "list", rds.instance_id)
    api = signed_v1(rds.endpoint, rds.key, "DescribeBackups", {"DBInstanceId": rds.instance_id})
    assert listed == api.json()["Items"]["Backup"]
    assert [b["BackupId"] for b in listed] == [backup["BackupId"]]

    shown = cli_json("backup", "show", rds.instance_id, backup["BackupId"])
    assert shown == listed[0]
    table = cli("backup", "list", rds.instance_id)
    assert backup["BackupId"] in table.stdout and "Success" in table.stdout


def test_a_failed_job_exits_1_with_its_reason_on_one_line(rds: MemoryRds) -> None:
    rds.server.fail_next_backup("lost connection to server during dump")
    result = cli("backup", "create", rds.instance_id, "--wait", "--interval", "0.2")
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: backup job ")
    assert "Failed: " in last and "lost connection to server during dump" in last


def test_job_list_shows_progress_and_job_watch_follows_it_to_the_end(rds: MemoryRds) -> None:
    gate = rds.server.block_next_backup()
    started = cli_json("backup", "create", rds.instance_id)
    job_id = started["BackupJobId"]
    try:
        assert gate.wait_reached()
        deadline = time.monotonic() + 10
        while True:  # the heartbeat records the bytes half way
            jobs = cli_json("job", "list", rds.instance_id)
            if (jobs and jobs[0]["BytesDone"] > 0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        [job] = jobs
        assert job["BackupJobId"] == job_id
        assert job["BackupStatus"] == "Uploading"  # the phase, as RDS names it
        assert 0 < job["BytesDone"] < job["BytesExpected"]
        table = cli("job", "list", rds.instance_id)
        assert job_id in table.stdout and "Uploading" in table.stdout
    finally:
        gate.release()
    watched = cli("job", "watch", rds.instance_id, job_id, "--interval", "0.2", "-o", "json")
    assert watched.exit_code == 0, watched.stderr
    done = json.loads(watched.stdout)
    assert done["BackupStatus"] == "Finished"
    assert done["BytesDone"] > job["BytesDone"]
    assert cli_json("job", "list", rds.instance_id) == []


def test_errors_carry_the_alibaba_code_and_exit_codes_tell_what_failed(
    rds: MemoryRds, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown_set = cli("backup", "show", rds.instance_id, "987654")
    assert unknown_set.exit_code == 1
    assert unknown_set.stderr.startswith("error: InvalidBackupSetID.NotFound (404): ")

    unknown_instance = cli("instance", "show", "rm-nosuchinstance")
    assert unknown_instance.exit_code == 1
    assert unknown_instance.stderr.startswith("error: InvalidDBInstanceId.NotFound (400): ")
    assert len(unknown_instance.stderr.strip().splitlines()) == 1

    bad_method = cli("backup", "create", rds.instance_id, "--method", "Tape")
    assert bad_method.exit_code == 2
    assert cli_json("job", "list", rds.instance_id) == []  # nothing was started

    monkeypatch.setenv("RDSBACKUP_ENDPOINT", "127.0.0.1:1")
    unreachable = cli("backup", "list", rds.instance_id)
    assert unreachable.exit_code == 3
    assert unreachable.stderr.startswith("error: unreachable: http://127.0.0.1:1/")


def test_api_calls_any_action_and_checks_its_parameters(rds: MemoryRds) -> None:
    changed = cli(
        "api",
        "ModifyBackupPolicy",
        f"DBInstanceId={rds.instance_id}",
        "PreferredBackupTime=03:00Z-04:00Z",
        "PreferredBackupPeriod=Monday,Thursday",
        "BackupRetentionPeriod=14",
    )
    assert changed.exit_code == 0, changed.stderr
    policy = cli_json("instance", "show", rds.instance_id)["BackupPolicy"]
    assert policy["PreferredBackupTime"] == "03:00Z-04:00Z"
    assert policy["PreferredBackupPeriod"] == "Monday,Thursday"
    assert str(policy["BackupRetentionPeriod"]) == "14"
    assert cli("api", "ModifyBackupPolicy", "oops").exit_code == 2
    refused = cli(
        "api",
        "ModifyBackupPolicy",
        f"DBInstanceId={rds.instance_id}",
        "PreferredBackupTime=25:00Z-26:00Z",
        "PreferredBackupPeriod=Monday",
        "BackupRetentionPeriod=14",
    )
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: InvalidPreferredBackupTime.Format (400): ")


def test_backup_fetch_downloads_the_set_and_checks_it_against_its_manifest(
    rds: MemoryRds, tmp_path: Path
) -> None:
    made = cli_json("backup", "create", rds.instance_id, "--wait", "--interval", "0.2")
    fetched = cli(
        "backup", "fetch", rds.instance_id, made["BackupId"], "--out", str(tmp_path / "s")
    )
    assert fetched.exit_code == 0, fetched.stderr
    got = json.loads(fetched.stdout)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert got["Files"] == ["manifest.json", *(o["name"] for o in manifest["objects"])]
    assert got["Encrypted"] is False
    for name in got["Files"][1:]:
        assert (tmp_path / "s" / name).stat().st_size > 0

    # A link whose set does not match the Checksum the client was given: refused.
    stored = cli_json("backup", "show", rds.instance_id, made["BackupId"])
    with pytest.raises(FetchFailed, match="does not match the set's Checksum"):
        fetch_url(stored["BackupDownloadURL"], "0" * 64, tmp_path / "bad", 1)
    missing = cli("backup", "fetch", rds.instance_id, "987654", "--out", str(tmp_path / "x"))
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: InvalidBackupSetID.NotFound (404): ")
