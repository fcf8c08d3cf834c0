"""The installed ``rdsbackup`` command against the real service and real servers: a
Physical MariaDB backup made and followed with ``backup create --wait`` is the set
DescribeBackups lists; ``check`` reports what a backup needs, and fails on what it lacks."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rdsbackup.instances.servers import LocalServer
from tests.fixtures.service import RDSBACKUP, Rds, ServiceProcess, signed_v1


def run(
    rds: Rds, *args: str, home: Path, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RDSBACKUP_PROFILES": str(home / "profiles.toml"),  # none: the environment says all
        "RDSBACKUP_ENDPOINT": rds.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": rds.key.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": rds.key.secret,
        "RDSBACKUP_CONFIG": str(config or rds.service.config),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [RDSBACKUP, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_backup_create_wait_makes_the_set_describe_backups_lists(
    rds: Rds, fresh_instance: Any, tmp_path: Path
) -> None:
    instance_id = fresh_instance("MariaDB")
    made = run(
        rds,
        "backup",
        "create",
        instance_id,
        "--method",
        "Physical",
        "--wait",
        "--interval",
        "0.3",
        "--output",
        "json",
        home=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    backup = json.loads(made.stdout)
    assert backup["BackupStatus"] == "Success" and backup["BackupMethod"] == "Physical"
    assert int(backup["BackupSize"]) > 0
    assert "Finished" in made.stderr
    api = signed_v1(
        rds.endpoint,
        rds.key,
        "DescribeBackups",
        {"DBInstanceId": instance_id, "BackupId": backup["BackupId"]},
    ).json()["Items"]["Backup"]
    listed = json.loads(run(rds, "backup", "list", instance_id, "-o", "json", home=tmp_path).stdout)
    assert [b["BackupId"] for b in listed] == [backup["BackupId"]]
    assert {k: v for k, v in listed[0].items() if "URL" not in k} == {
        k: v for k, v in api[0].items() if "URL" not in k
    }


def test_check_passes_for_the_fixture_servers_and_names_what_is_missing(
    rds: Rds,
    mariadb: LocalServer,
    service_maker: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    for instance_id in (rds.mariadb_id, rds.postgres_id):
        done = run(rds, "check", instance_id, "--output", "json", home=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = json.loads(done.stdout)
        checks = {r["Check"]: r for r in rows}
        assert {
            "server",
            "tool Physical",
            "tool Logical",
            "method Physical",
            "method Logical",
            "method Snapshot",
            "rights",
            "space",
        } <= set(checks)
        assert all(r["Status"] == "ok" for r in rows), rows
        assert checks["tool Physical"]["Detail"].split(":")[0].rsplit("/", 1)[1] in (
            "mariadb-backup",
            "mariabackup",
            "pg_basebackup",
        )

    # The same server registered, in a service of its own, with a data directory the
    # service cannot find: Physical and Snapshot cannot run, Logical still can.
    other = service_maker()
    lost = other.register(mariadb, "acct1", "--data-dir", str(tmp_path / "gone"))
    found = run(rds, "check", "-o", "json", home=tmp_path, config=other.config)
    assert found.returncode == 1
    status = {r["Check"]: r["Status"] for r in json.loads(found.stdout)}
    assert status["server"] == "ok" and status["method Logical"] == "ok"
    assert status["method Snapshot"] == "fail"
    table = run(rds, "check", lost, home=tmp_path, config=other.config)
    assert table.returncode == 1 and "method Snapshot" in table.stdout
    unknown = run(rds, "check", "rm-nosuchinstance", home=tmp_path, config=other.config)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: InvalidDBInstanceId.NotFound")
