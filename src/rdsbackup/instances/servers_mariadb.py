"""A local MariaDB server: ``mariadb-install-db`` + ``mariadbd``."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import pymysql

from rdsbackup.engines.families import MARIADB
from rdsbackup.engines.tools import find_binary, last_error_line, user_kwargs
from rdsbackup.instances.servers import HOST, LocalServer, LocalServerError
from rdsbackup.instances.servers_os import server_env

_SBIN = (Path("/usr/sbin"), Path("/usr/libexec"), Path("/usr/local/sbin"))
_ACCESS_DENIED = 1045


@functools.cache
def _binary_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"Ver\s+(\d+\.\d+\.\d+)", out.stdout)
    if not found:
        raise LocalServerError(f"cannot read the version of {binary}: {out.stdout.strip()}")
    return found.group(1)


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class MariaDBServer(LocalServer):
    engine = MARIADB.name
    default_os_user = "mysql"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "mysqld.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "error.log"

    @property
    def socket(self) -> Path:
        return self.run_dir / "mysqld.sock"

    @property
    def tmp_dir(self) -> Path:
        """A private tmpdir: concurrent servers sharing /tmp break each other's
        temporary tables (seen as "Could not remove temporary table" in bootstrap)."""
        return self.base_dir / "tmp"

    @property
    def mariadbd(self) -> str:
        return find_binary("mariadbd", "mysqld", extra_dirs=_SBIN)

    def version(self) -> str:
        return _binary_version(self.mariadbd)

    def _common_args(self) -> list[str]:
        return [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--tmpdir={self.tmp_dir}",
            "--innodb-buffer-pool-size=128M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ]

    def _server_args(self) -> list[str]:
        return [
            *self._common_args(),
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log_file}",
            # relative: the binlogs and their index live in (and move with) data_dir
            "--log-bin=binlog",
            "--server-id=1",
            "--binlog-format=ROW",
            "--skip-name-resolve",
            "--max-allowed-packet=64M",
        ]

    def _run(self, args: list[str], log_name: str, stdin: str | None = None) -> None:
        out = subprocess.run(
            args,
            input=stdin.encode() if stdin is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            cwd=self.base_dir,
            env=server_env({"TMPDIR": str(self.tmp_dir)}),
            timeout=300,
            check=False,
            **user_kwargs(self.os_user),
        )
        name = Path(args[0]).name
        (self.log_dir / log_name).write_bytes(out.stdout + out.stderr)
        if out.returncode != 0:
            lines = (out.stdout + out.stderr).decode("utf-8", "replace").splitlines()
            errors = [ln for ln in lines if "[ERROR]" in ln] or [last_error_line(lines)]
            raise LocalServerError(f"{name} exited with {out.returncode}: {' | '.join(errors[:3])}")

    def create_dirs(self) -> None:
        super().create_dirs()
        self.tmp_dir.mkdir(exist_ok=True)
        self._own(self.tmp_dir)
        self.tmp_dir.chmod(0o700)

    def _init_data(self) -> None:
        install = find_binary("mariadb-install-db", "mysql_install_db")
        args = [
            install,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            f"--tmpdir={self.tmp_dir}",
        ]
        if self.os_user:
            args.append(f"--user={self.os_user}")
        self._run(args, "install-db.log")
        self._run(
            [*self._common_args(), "--bootstrap"],
            "bootstrap.log",
            stdin=self._admin_sql(),
        )

    def _admin_sql(self) -> str:
        # FLUSH PRIVILEGES loads the grant tables, which --bootstrap starts without.
        lines = ["FLUSH PRIVILEGES;"]
        user, password = sql_string(self.admin_user), sql_string(self.admin_password)
        for host in ("'%'", "'localhost'"):
            lines += [
                f"CREATE USER {user}@{host} IDENTIFIED BY {password};",
                f"GRANT ALL PRIVILEGES ON *.* TO {user}@{host} WITH GRANT OPTION;",
            ]
        return "\n".join(lines) + "\n"

    def _prepare_start(self) -> None:
        self._check_socket_path(self.socket)
        self.socket.unlink(missing_ok=True)

    def _answers(self) -> bool:
        try:
            conn = pymysql.connect(
                host=HOST,
                port=self.port,
                user=self.admin_user,
                password=self.admin_password,
                connect_timeout=2,
            )
        except pymysql.err.MySQLError as e:
            if e.args and e.args[0] == _ACCESS_DENIED:
                raise LocalServerError(
                    f"MariaDB at port {self.port} refuses {self.admin_user}: {e.args[-1]}"
                ) from e
            return False
        conn.close()
        return True
