"""Running the engines' command-line tools: argument lists only (never a shell),
stderr kept for the error reason, process groups killed on failure, secrets passed
in 0600 files (never on the command line, nor in the environment, which
``/proc/<pid>/environ`` shows)."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import functools
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, BinaryIO

from rdsbackup.engines.base import ToolFailed
from rdsbackup.readahead import ReadAhead

log = logging.getLogger(__name__)
_ERROR_WORDS = ("error", "fatal", "failed", "cannot", "could not", "denied", "abort")
CHUNK = 1 << 20


def last_error_line(lines: Sequence[str]) -> str:
    """The line that best says why a tool failed: the last one naming an error."""
    clean = [ln.strip() for ln in lines if ln.strip()]
    for line in reversed(clean):
        if any(w in line.lower() for w in _ERROR_WORDS):
            return line
    return clean[-1] if clean else "no output"


def find_binary(*names: str, extra_dirs: Sequence[Path] = ()) -> str:
    for name in names:
        for d in extra_dirs:
            candidate = d / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        found = shutil.which(name)
        if found:
            return found
    raise ToolFailed(f"none of {', '.join(names)} is installed")


@functools.cache
def tool_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as e:
        return f"unavailable: {e}"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def user_kwargs(os_user: str | None) -> dict[str, Any]:
    """Popen arguments that run a tool as ``os_user`` when the service runs as root."""
    if not os_user or os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(os_user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def chown_for(path: Path, os_user: str | None) -> None:
    if os_user and os.geteuid() == 0:
        pw = pwd.getpwnam(os_user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


class ToolProcess:
    """A running tool: own process group, stderr drained by a thread into a ring buffer
    (and shown line by line to ``on_line``, on that thread)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        os_user: str | None = None,
        keep_lines: int = 200,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.args = list(args)
        self.on_line = on_line
        self.name = Path(self.args[0]).name
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL"))}
        full_env.update(env or {})
        full_env.setdefault("LC_ALL", "C.UTF-8")
        self._passfile: PgPassfile | None = None
        if "PGPASSWORD" in full_env:
            self._passfile = PgPassfile(full_env.pop("PGPASSWORD"), owner=os_user)
            full_env["PGPASSFILE"] = str(self._passfile.path)
        try:
            self.proc = subprocess.Popen(
                self.args,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                # Its own process group (killed as one), but the service's session: with
                # sched_autogroup each session is a scheduling group, and a tool in a group
                # of its own competed with the service threads feeding it (PostgreSQL
                # logical backup of pgbench scale 70: 2.7-2.9 s against 2.95-3.15 s).
                process_group=0,
                **user_kwargs(os_user),
            )
        except BaseException:
            self._remove_passfile()
            raise
        if stdout == subprocess.PIPE and self.proc.stdout is not None:
            widen_pipe(self.proc.stdout.fileno())
        self.lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._reader = threading.Thread(target=self._drain, name=f"{self.name}-stderr", daemon=True)
        self._reader.start()

    def _remove_passfile(self) -> None:
        if self._passfile is not None:
            self._passfile.remove()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.on_line is not None:
                try:
                    self.on_line(line)
                except Exception:  # a watcher's failure must not stop the draining
                    log.exception("%s: the stderr watcher failed", self.name)

    @property
    def stdout(self) -> BinaryIO:
        assert self.proc.stdout is not None
        return self.proc.stdout  # type: ignore[return-value]

    @property
    def stdin(self) -> BinaryIO:
        assert self.proc.stdin is not None
        return self.proc.stdin  # type: ignore[return-value]

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self._remove_passfile()
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._remove_passfile()
        self._reader.join(timeout=10)

    def check(self, timeout: float | None = None, *, success_marker: str | None = None) -> None:
        """Wait; raise ToolFailed with the tool's own error line unless it succeeded."""
        code = self.wait(timeout)
        if code != 0:
            raise ToolFailed(f"{self.name} exited with {code}: {last_error_line(list(self.lines))}")
        if success_marker and not any(success_marker in ln for ln in list(self.lines)[-5:]):
            raise ToolFailed(
                f"{self.name} did not report success: {last_error_line(list(self.lines))}"
            )

    def __enter__(self) -> ToolProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.kill()
        elif self.proc.poll() is not None:
            self._remove_passfile()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with suppress(OSError):
                    f.close()


PIPE_BYTES = 1 << 20


def widen_pipe(fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB: fewer wake-ups between a tool and the reader.
    Best effort (Linux only; capped by /proc/sys/fs/pipe-max-size)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def feed(reader: BinaryIO, tool: ToolProcess) -> None:
    """Copy ``reader`` into the tool's stdin, then close it. A tool that stops reading
    early is left for ``check`` to report. ``reader`` is read ahead on another thread,
    so producing the bytes (decompressing a stored object) overlaps writing them."""
    ahead = ReadAhead(reader, name="feed-read")
    try:
        while chunk := ahead.read(CHUNK):
            tool.stdin.write(chunk)
    except BrokenPipeError:
        pass
    finally:
        ahead.close()
        with suppress(BrokenPipeError):
            tool.stdin.close()


@contextmanager
def private_file(content: str, *, owner: str | None = None, suffix: str = "") -> Iterator[Path]:
    """A 0600 file holding a secret for a tool (an option file, a password file)."""
    fd, name = tempfile.mkstemp(prefix="rdsbackup-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        chown_for(path, owner)
        yield path
    finally:
        path.unlink(missing_ok=True)


class PgPassfile:
    """A libpq password file (``PGPASSFILE``) matching any server, 0600 in a 0700
    folder of its own, for one tool run; :meth:`remove` deletes both (idempotent, and
    done at garbage collection at the latest). ``owner`` gets both when the service
    is root and the tool runs as that OS user."""

    def __init__(self, password: str, *, owner: str | None = None) -> None:
        if "\n" in password or "\r" in password:
            raise ToolFailed("a PostgreSQL password holding a line break cannot be used")
        self.folder = Path(tempfile.mkdtemp(prefix="rdsbackup-pgpass-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        self.path = self.folder / "pgpass"
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{escaped}\n")
        chown_for(self.folder, owner)
        chown_for(self.path, owner)

    def remove(self) -> None:
        self._finalizer()


@contextmanager
def pg_passfile_env(
    env: Mapping[str, str], *, owner: str | None = None
) -> Iterator[dict[str, str]]:
    """``env`` with its ``PGPASSWORD`` moved into a :class:`PgPassfile`, for a tool
    started by other means than :class:`ToolProcess` (which does this itself)."""
    out = dict(env)
    password = out.pop("PGPASSWORD", None)
    if password is None:
        yield out
        return
    passfile = PgPassfile(password, owner=owner)
    try:
        yield out | {"PGPASSFILE": str(passfile.path)}
    finally:
        passfile.remove()


@contextmanager
def mysql_option_file(
    host: str, port: int, user: str, password: str, *, owner: str | None = None
) -> Iterator[Path]:
    """A ``[client]`` option file for the MariaDB tools (pass as ``--defaults-extra-file``)."""

    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    body = (
        "[client]\n"
        f"host={q(host)}\nport={port}\nuser={q(user)}\npassword={q(password)}\n"
        "protocol=TCP\n"
    )
    with private_file(body, owner=owner, suffix=".cnf") as path:
        yield path


def pg_env(
    host: str, port: int, user: str, password: str, dbname: str = "postgres"
) -> dict[str, str]:
    """libpq environment for the PostgreSQL tools. The password never reaches argv, and
    :class:`ToolProcess` moves it from ``PGPASSWORD`` into a :class:`PgPassfile`."""
    return {
        "PGHOST": host,
        "PGPORT": str(port),
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": dbname,
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": "rdsbackup",
    }
