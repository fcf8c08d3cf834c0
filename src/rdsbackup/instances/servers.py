"""Local database servers the service provisions and supervises.

A :class:`LocalServer` owns one instance folder::

    base_dir/
      data/   the data directory (initialised here, or put here by a restore)
      run/    socket and pid file
      log/    the server's log
      conf/   configuration files the server is started with (PostgreSQL)

Servers run as children in their own session, so they outlive the service's signals.
Every setting comes from the command line (or from ``conf/``), never from the data
directory, so a data directory restored from another server starts the same way.
When the service runs as root, the server runs as ``os_user`` (``mysql``/``postgres``)
and the data directory is handed to that user before each start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from rdsbackup.engines.base import EngineError, ServerAccess
from rdsbackup.engines.families import MARIADB, POSTGRES, Family, family_of
from rdsbackup.engines.tools import user_kwargs
from rdsbackup.instances.ports import free_port, port_is_free
from rdsbackup.instances.servers_os import (
    children,
    chown_tree,
    first_unsearchable,
    process_alive,
    process_args,
    server_env,
)

__all__ = [
    "LocalServer",
    "LocalServerError",
    "PortInUse",
    "free_port",
    "local_server",
]

HOST = "127.0.0.1"
_MAX_SOCKET_PATH = 107


class LocalServerError(EngineError):
    """A local server could not be initialised, started or stopped."""


class PortInUse(LocalServerError):
    pass


class LocalServer(ABC):
    """One provisioned local server. Subclasses supply the engine specifics."""

    engine: ClassVar[str]
    default_os_user: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(
        self,
        base_dir: Path,
        port: int,
        admin_user: str,
        admin_password: str,
        os_user: str | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.data_dir = self.base_dir / "data"
        self.run_dir = self.base_dir / "run"
        self.log_dir = self.base_dir / "log"
        self.port = port
        self.admin_user = admin_user
        self.admin_password = admin_password
        if os.geteuid() == 0:
            self.os_user: str | None = os_user or self.default_os_user
            if self.os_user == "root":
                raise LocalServerError(f"{self.engine} must not run as root")
        else:
            self.os_user = None
        self._log_start = 0
        if "\n" in admin_password or "\0" in admin_password:
            raise LocalServerError("the admin password must be a single line")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_dir} port={self.port}>"

    # -- what each engine supplies ------------------------------------------------

    @property
    @abstractmethod
    def pid_file(self) -> Path: ...

    @property
    @abstractmethod
    def log_file(self) -> Path: ...

    @abstractmethod
    def _init_data(self) -> None:
        """Create a new cluster in the existing, empty, correctly owned ``data_dir``."""

    @abstractmethod
    def _prepare_start(self) -> None:
        """Engine chores before a start (config files, modes, stale files)."""

    @abstractmethod
    def _server_args(self) -> list[str]: ...

    @abstractmethod
    def _answers(self) -> bool:
        """True when the server accepts the admin login; raise LocalServerError when it
        refuses it (the server is up, waiting will not help)."""

    @abstractmethod
    def version(self) -> str: ...

    # -- public API -----------------------------------------------------------------

    def access(self) -> ServerAccess:
        return ServerAccess(
            host=HOST,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            data_dir=self.data_dir,
            os_user=self.os_user,
        )

    def create_dirs(self) -> None:
        """Create the instance folder with an empty ``data_dir`` (for a restore to fill)."""
        self._check_reachable()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o711)
        for d in (self.run_dir, self.log_dir, self.data_dir):
            d.mkdir(exist_ok=True)
            self._own(d)
        self.data_dir.chmod(0o700)

    def initialize(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise LocalServerError(f"{self.data_dir} is not empty; refusing to initialize")
        self.create_dirs()
        self._init_data()

    def start(self, timeout: float = 60) -> None:
        if self.is_running():
            self._wait_ready(timeout, None)
            return
        if not self.data_dir.is_dir() or not any(self.data_dir.iterdir()):
            raise LocalServerError(f"{self.data_dir} holds no data; initialize or restore first")
        self.create_dirs()
        if self.os_user and os.geteuid() == 0:
            chown_tree(self.data_dir, self.os_user)
        self.data_dir.chmod(0o700)
        self._remove_stale_pid_file()
        self._prepare_start()
        if not port_is_free(self.port):
            raise PortInUse(f"port {self.port} is already in use; pick another port")
        proc = self._spawn()
        try:
            self._wait_ready(timeout, proc)
        except BaseException:
            self._kill_group(proc.pid)
            raise

    def stop(self, timeout: float = 60) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        if self._wait_exit(pid, timeout):
            return
        self._kill_group(pid)
        if not self._wait_exit(pid, 30):
            raise LocalServerError(f"{self.engine} (pid {pid}) survived SIGKILL")

    def pid(self) -> int | None:
        """The server's pid, when the pid file names a live process serving ``data_dir``."""
        pid = self._pid_in_file()
        if pid is None or not process_alive(pid) or not self._serves_data_dir(pid):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def log_tail(self, lines: int = 20) -> str:
        return self._read_log(0, lines)

    # -- helpers ------------------------------------------------------------------------

    def _own(self, path: Path) -> None:
        if self.os_user and os.geteuid() == 0:
            pw = pwd.getpwnam(self.os_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _check_reachable(self) -> None:
        """Fail clearly when ``os_user`` cannot traverse to ``base_dir`` (which
        ``create_dirs`` makes traversable itself)."""
        if not self.os_user or os.geteuid() != 0:
            return
        blocked = first_unsearchable(self.base_dir.parents, self.os_user)
        if blocked is not None:
            path, st = blocked
            owner = pwd.getpwuid(st.st_uid).pw_name
            raise LocalServerError(
                f"{self.os_user} cannot reach {self.base_dir}: {path} (mode "
                f"{stat.S_IMODE(st.st_mode):o}, owner {owner}) is not searchable by "
                f"{self.os_user}; put the server under a folder every parent of "
                "which is traversable (o+x)"
            )

    def _check_socket_path(self, path: Path) -> None:
        if len(str(path)) > _MAX_SOCKET_PATH:
            raise LocalServerError(
                f"socket path {path} is longer than {_MAX_SOCKET_PATH} bytes;"
                " use a shorter base_dir"
            )

    def _pid_in_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split("\n", 1)[0].strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 else None

    def _remove_stale_pid_file(self) -> None:
        """Remove a pid file left by a crash (or copied with the data), unless it names a
        live database server: that one may be using ``data_dir`` under another path."""
        pid = self._pid_in_file()
        if pid is not None and process_alive(pid):
            args = process_args(pid)
            if args and Path(args[0]).name.startswith(("postgres", "mariadbd", "mysqld")):
                raise LocalServerError(
                    f"{self.pid_file} names a running database server (pid {pid});"
                    f" is another server using {self.data_dir}?"
                )
        self.pid_file.unlink(missing_ok=True)

    def _serves_data_dir(self, pid: int) -> bool:
        target = str(self.data_dir)
        return any(a == target or a.endswith("=" + target) for a in process_args(pid))

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_file.open("ab") as log:
            self._log_start = log.tell()
            proc = subprocess.Popen(
                self._server_args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.base_dir,
                env=server_env(),
                start_new_session=True,
                close_fds=True,
                **user_kwargs(self.os_user),
            )
        children[proc.pid] = proc
        return proc

    def _wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise self._start_failure(f"exited with code {proc.returncode}")
            if proc is None and not self.is_running():
                raise self._start_failure("stopped while starting")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise self._start_failure(f"did not accept connections within {timeout:g}s")
            time.sleep(0.1)

    def _start_failure(self, what: str) -> LocalServerError:
        tail = self._read_log(self._log_start, 15)  # only this start's lines
        where = f"{self.engine} at {self.base_dir} (port {self.port})"
        if "Address already in use" in tail or "Bind on TCP/IP port" in tail:
            return PortInUse(f"{where}: port {self.port} is already in use; pick another port")
        last = [ln for ln in tail.splitlines() if ln.strip()][-3:]
        return LocalServerError(f"{where} {what}: " + " | ".join(last))

    def _read_log(self, since: int, lines: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(max(since, f.seek(0, os.SEEK_END) - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while process_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        child = children.get(pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(30)
            children.pop(pid, None)


def local_server(
    engine: str,
    base_dir: Path,
    port: int,
    admin_user: str,
    admin_password: str,
    os_user: str | None = None,
) -> LocalServer:
    """A server of ``engine`` (``MariaDB`` or ``PostgreSQL``) living in ``base_dir``.

    ``os_user`` only matters when running as root; ``None`` then means the engine's
    usual account (``mysql`` / ``postgres``).
    """
    from rdsbackup.instances.servers_mariadb import MariaDBServer
    from rdsbackup.instances.servers_postgres import PostgresServer

    kinds: dict[Family, type[LocalServer]] = {MARIADB: MariaDBServer, POSTGRES: PostgresServer}
    try:
        kind = kinds[family_of(engine)]
    except KeyError:
        raise LocalServerError(f"unknown engine {engine!r}") from None
    return kind(base_dir, port, admin_user, admin_password, os_user)
