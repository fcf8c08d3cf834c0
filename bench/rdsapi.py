"""The service under test: ``rdsbackup serve`` as a subprocess with its own state folder,
its admin CLI, and a small RPC client that signs requests (HMAC-SHA1, V1).

The pieces mirror ``tests/fixtures/service.py`` (bench never imports from tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rdsbackup.api import signature as sig
from rdsbackup.instances.servers import LocalServer


def rdsbackup_binary() -> str:
    beside = Path(sys.executable).with_name("rdsbackup")
    if beside.is_file():
        return str(beside)
    found = shutil.which("rdsbackup")
    if found is None:
        raise RuntimeError("rdsbackup is not installed (make venv)")
    return found


class ApiError(Exception):
    """An error body from the service: ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str


@dataclass
class ServiceProcess:
    """``rdsbackup serve`` on ``port``, configured by ``root/rdsbackup.toml``."""

    root: Path
    port: int
    settings: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        self.log_path = self.root / "service.log"
        lines = [f'state_dir = "{self.root / "state"}"', f"port = {self.port}"]
        lines += [f"{name} = {json.dumps(value)}" for name, value in self.settings.items()]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def config(self) -> Path:
        return self.root / "rdsbackup.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the service is not running")
        return self.proc.pid

    @property
    def storage_dir(self) -> Path:
        """Where the service stores its sets (the default under ``state_dir``)."""
        return self.root / "state" / "backups"

    @property
    def instances_dir(self) -> Path:
        """Where the service keeps the local instances it provisions (clones)."""
        return self.root / "state" / "instances"

    def env(self) -> dict[str, str]:
        return {**os.environ, "RDSBACKUP_CONFIG": str(self.config)}

    def cli(self, *args: str) -> str:
        """Run ``rdsbackup <args>`` against this service's state; its stdout."""
        out = subprocess.run(
            [rdsbackup_binary(), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rdsbackup {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def cli_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.cli(*args).strip().splitlines()[-1]))

    def add_key(self, account: str = "bench") -> Key:
        out = self.cli_json("key", "create", "--account", account)
        return Key(out["AccessKeyId"], out["AccessKeySecret"])

    def register(self, server: LocalServer, account: str = "bench") -> str:
        password_file = self.root / f"pw-{uuid.uuid4().hex}"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(server.admin_password)
        try:
            args = [
                "instance",
                "add",
                "--engine",
                server.engine,
                "--host",
                "127.0.0.1",
                "--port",
                str(server.port),
                "--user",
                server.admin_user,
                "--password-file",
                str(password_file),
                "--account",
                account,
                "--data-dir",
                str(server.data_dir),
                "--description",
                f"bench {server.engine}",
            ]
            if server.os_user:
                args += ["--os-user", server.os_user]
            out = self.cli_json(*args)
        finally:
            password_file.unlink()
        if out.get("DBInstanceStatus") != "Running":
            raise RuntimeError(f"the service cannot reach the bench {server.engine}: {out}")
        return str(out["DBInstanceId"])

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [rdsbackup_binary(), "serve"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.url, timeout=1).close()  # noqa: S310 - loopback
                return
            except urllib.error.HTTPError:
                return  # an error body is an answer
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the service did not answer:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def signed_query(key: Key, action: str, params: dict[str, str]) -> str:
    """The query string of a V1-signed (HMAC-SHA1) POST of ``action``."""
    signed = {
        "Action": action,
        "Version": "2014-08-15",
        "Format": "JSON",
        "AccessKeyId": key.access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **params,
    }
    digest = hmac.new(
        (key.secret + "&").encode(),
        sig.v1_string_to_sign("POST", signed).encode(),
        hashlib.sha1,
    ).digest()
    return urllib.parse.urlencode(
        {**signed, "Signature": base64.b64encode(digest).decode()},
        quote_via=urllib.parse.quote,
    )


class RdsClient:
    """Signed RPC calls (``SignatureVersion=1.0``); JSON answers as dicts."""

    def __init__(self, url: str, key: Key, timeout: float = 60) -> None:
        self.url, self.key, self.timeout = url, key, timeout

    def full_backup(
        self, instance: str, method: str = "Physical", poll: float = 0.05
    ) -> dict[str, Any]:
        """CreateBackup (FullBackup), then DescribeBackupTasks every ``poll`` seconds until
        the job is Finished; its last BackupJob item (RuntimeError when it Failed)."""
        job_id = str(
            self.call(
                "CreateBackup", DBInstanceId=instance, BackupMethod=method, BackupType="FullBackup"
            )["BackupJobId"]
        )
        while True:
            job = self.call("DescribeBackupTasks", DBInstanceId=instance, BackupJobId=job_id)[
                "Items"
            ]["BackupJob"][0]
            if job["BackupStatus"] == "Finished":
                return dict(job)
            if job["BackupStatus"] == "Failed":
                raise RuntimeError(f"the backup failed: {job.get('FailedReason')}")
            time.sleep(poll)

    def call(self, action: str, **params: str) -> dict[str, Any]:
        query = signed_query(self.key, action, params)
        url = f"{self.url}?{query}"  # always http://127.0.0.1:<port>/
        request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                err = json.loads(body)
            except ValueError:
                raise ApiError(e.code, "HTTP", body.decode(errors="replace")[:500]) from None
            raise ApiError(e.code, str(err.get("Code")), str(err.get("Message"))) from None
