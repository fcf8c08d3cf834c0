"""A checkout in a folder others cannot enter (under /root, or `mktemp -d`, mode 0700):
the servers run as mysql/postgres, so their folders go where those users can reach them,
and an `instances_dir` set to an unreachable place is refused at once, by name."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdsbackup.instances.home import SYSTEM_HOME
from rdsbackup.instances.servers import free_port
from tests.fixtures.service import FAST, RDSBACKUP, ServiceProcess, signed_v1, wait_job

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="servers run as mysql/postgres only when the service is root"
)


@pytest.fixture
def private() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rdsbackup-private-"))
    assert folder.stat().st_mode & 0o777 == 0o700
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_local_instances_work_from_a_0700_folder(private: Path) -> None:
    svc = ServiceProcess(private / "checkout", free_port(), FAST)
    key = svc.add_key("team")
    link = svc.root / "state" / "instances"
    home = link.resolve()
    try:
        assert link.is_symlink() and home.parent.parent == SYSTEM_HOME, home
        ids = {
            engine: str(
                svc.cli_json("instance", "create", "--engine", engine, "--account", "team")[
                    "DBInstanceId"
                ]
            )
            for engine in ("MariaDB", "PostgreSQL")
        }
        for instance_id in ids.values():
            assert (home / instance_id / "data").is_dir()
        svc.start(command=("serve",))
        for instance_id in ids.values():
            job = signed_v1(
                svc.endpoint,
                key,
                "CreateBackup",
                {"DBInstanceId": instance_id, "BackupMethod": "Physical"},
            ).json()["BackupJobId"]
            done = wait_job(svc.endpoint, key, instance_id, job)
            assert done["BackupStatus"] == "Finished", done
    finally:
        svc.stop()
        for pid_file in home.rglob("*.pid"):  # servers left by a failed stop
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(home.parent, ignore_errors=True)


def test_an_unreachable_instances_dir_is_refused_by_name(private: Path) -> None:
    svc = ServiceProcess(private / "checkout", free_port(), {"instances_dir": str(private / "x")})
    for command in (["instance", "create", "--engine", "MariaDB"], ["serve"]):
        out = subprocess.run(
            [RDSBACKUP, *command], env=svc.env(), capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2, out
        assert "instances_dir" in out.stderr and "mysql cannot enter" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert not (private / "x").exists()
