"""A local PostgreSQL server: ``initdb`` + ``postgres``.

The server reads ``conf/postgresql.conf``, ``conf/pg_hba.conf`` and ``conf/pg_ident.conf``
(written before every start), never the copies inside the data directory: a data
directory restored from elsewhere may carry its source's files, or none at all (Debian
keeps them in /etc).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
from pathlib import Path

import psycopg

from rdsbackup.engines.families import POSTGRES
from rdsbackup.engines.tools import last_error_line, private_file, user_kwargs
from rdsbackup.instances.servers import HOST, LocalServer, LocalServerError
from rdsbackup.instances.servers_os import server_env

_HBA = """\
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
local   replication  all                  scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
host    replication  all   ::1/128        scram-sha-256
"""

_CONF = """\
# Written by rdsbackup before every start; port, sockets and files come from argv.
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
password_encryption = scram-sha-256
timezone = 'UTC'
log_timezone = 'UTC'
datestyle = 'iso, mdy'
lc_messages = 'C'
"""

_AUTH_FAILED = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


@functools.cache
def pg_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (``RDSBACKUP_PG_BINDIR`` wins)."""
    override = os.environ.get("RDSBACKUP_PG_BINDIR")
    candidates = [Path(override)] if override else []
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        candidates.append(Path(out.stdout.strip()))
    except OSError:
        pass

    def major(p: Path) -> int:
        found = re.search(r"/(\d+)/bin$", str(p))
        return int(found.group(1)) if found else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    for d in candidates:
        if (d / "postgres").is_file() and (d / "initdb").is_file():
            return d
    raise LocalServerError("no PostgreSQL server binaries (postgres, initdb) found")


@functools.cache
def _binary_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", out.stdout)
    if not found:
        raise LocalServerError(f"cannot read the version of {binary}: {out.stdout.strip()}")
    return found.group(1)


class PostgresServer(LocalServer):
    engine = POSTGRES.name
    default_os_user = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown; SIGTERM would wait for clients to leave

    @property
    def conf_dir(self) -> Path:
        return self.base_dir / "conf"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "postgresql.log"

    def version(self) -> str:
        return _binary_version(str(pg_bindir() / "postgres"))

    def _server_args(self) -> list[str]:
        return [
            str(pg_bindir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.run_dir),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"config_file={self.conf_dir / 'postgresql.conf'}",
            "-c",
            f"hba_file={self.conf_dir / 'pg_hba.conf'}",
            "-c",
            f"ident_file={self.conf_dir / 'pg_ident.conf'}",
        ]

    def _init_data(self) -> None:
        with private_file(self.admin_password + "\n", owner=self.os_user) as pwfile:
            args = [
                str(pg_bindir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.admin_user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
            out = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd=self.base_dir,
                env=server_env(),
                timeout=300,
                check=False,
                **user_kwargs(self.os_user),
            )
        if out.returncode != 0:
            lines = (out.stderr + out.stdout).decode("utf-8", "replace").splitlines()
            raise LocalServerError(f"initdb exited with {out.returncode}: {last_error_line(lines)}")

    def _prepare_start(self) -> None:
        self._check_socket_path(self.run_dir / f".s.PGSQL.{self.port}")
        self.conf_dir.mkdir(exist_ok=True)
        self.conf_dir.chmod(0o755)
        for name, text in (
            ("postgresql.conf", _CONF),
            ("pg_hba.conf", _HBA),
            ("pg_ident.conf", ""),
        ):
            path = self.conf_dir / name
            path.write_text(text)
            path.chmod(0o644)

    def _answers(self) -> bool:
        try:
            conn = psycopg.connect(
                host=HOST,
                port=self.port,
                user=self.admin_user,
                password=self.admin_password,
                dbname="postgres",
                connect_timeout=2,
            )
        except psycopg.Error as e:
            message = str(e)
            if any(m in message for m in _AUTH_FAILED):
                raise LocalServerError(
                    f"PostgreSQL at port {self.port} refuses {self.admin_user}: "
                    + last_error_line(message.splitlines())
                ) from e
            return False
        conn.close()
        return True
