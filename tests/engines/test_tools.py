"""ToolProcess: the process group it is killed by, the session it shares with the
service, the stderr watcher, and the PostgreSQL password it hands over in a file."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from rdsbackup.engines.base import ToolFailed
from rdsbackup.engines.tools import ToolProcess, pg_passfile_env


def test_a_tool_leads_its_own_group_inside_the_services_session() -> None:
    with ToolProcess(["sleep", "30"], stdout=subprocess.DEVNULL) as tool:
        pid = tool.proc.pid
        assert os.getpgid(pid) == pid  # killed as one group
        assert os.getsid(pid) == os.getsid(0)  # scheduled with the service (autogroup)
        tool.kill()


def test_kill_takes_the_tools_children_too() -> None:
    with ToolProcess(
        ["sh", "-c", "sleep 30 & echo $! >&2; wait"], stdout=subprocess.DEVNULL
    ) as tool:
        deadline = time.monotonic() + 5
        while not tool.lines and time.monotonic() < deadline:
            time.sleep(0.01)
        child = int(tool.lines[0])
        tool.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    pytest.fail(f"the tool's child {child} survived kill()")


def test_the_watcher_sees_every_line_and_its_failure_stops_nothing() -> None:
    seen: list[str] = []

    def watch(line: str) -> None:
        seen.append(line)
        if line == "two":
            raise RuntimeError("watcher bug")

    script = "echo one >&2; echo two >&2; echo 'fatal: three' >&2; exit 3"
    tool = ToolProcess(["sh", "-c", script], stdout=subprocess.DEVNULL, on_line=watch)
    with tool, pytest.raises(ToolFailed, match=r"sh exited with 3: fatal: three"):
        tool.check(10)
    assert seen == ["one", "two", "fatal: three"]
    assert list(tool.lines) == seen


PASSWORD = "S3cret:pw\\#'q"
SHOW = (
    'tr "\\0" "\\n" </proc/self/environ; echo ---; '
    'stat -c "%a %n" "$PGPASSFILE" "$(dirname "$PGPASSFILE")"; echo ---; cat "$PGPASSFILE"'
)


def test_a_postgres_password_reaches_the_tool_in_a_private_file_only() -> None:
    tool = ToolProcess(["sh", "-c", SHOW], env={"PGPASSWORD": PASSWORD, "PGUSER": "u"})
    with tool:
        out = tool.stdout.read().decode()
        tool.check(10)
    environ, modes, passfile = out.split("---\n")
    assert "PGUSER=u" in environ.splitlines()
    assert PASSWORD not in environ and "PGPASSWORD" not in environ
    file_mode, file_name = modes.splitlines()[0].split()
    folder_mode = modes.splitlines()[1].split()[0]
    assert (file_mode, folder_mode) == ("600", "700")
    assert passfile == "*:*:*:*:S3cret\\:pw\\\\#'q\n"  # libpq escapes ':' and backslash
    assert not Path(file_name).exists() and not Path(file_name).parent.exists()


def _environ_after_exec(pid: int, program: bytes) -> list[bytes]:
    """The tool's environment once it runs ``program``: read before the exec, /proc
    shows the forking parent's."""
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(program):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_the_passfile_is_removed_when_the_tool_is_killed() -> None:
    with ToolProcess(["sleep", "30"], env={"PGPASSWORD": "S3cret-xyzzy"}) as tool:
        environ = _environ_after_exec(tool.proc.pid, b"sleep")
        passfile = Path(next(e for e in environ if e.startswith(b"PGPASSFILE=")).decode()[11:])
        assert passfile.exists()
        assert b"S3cret-xyzzy" not in b"".join(e.partition(b"=")[2] for e in environ)
        tool.kill()
    assert not passfile.parent.exists()


def test_pg_passfile_env_for_a_tool_started_otherwise() -> None:
    with pg_passfile_env({"PGPASSWORD": PASSWORD, "PGHOST": "h"}) as env:
        assert "PGPASSWORD" not in env and env["PGHOST"] == "h"
        path = Path(env["PGPASSFILE"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        done = subprocess.run(["sh", "-c", 'cat "$PGPASSFILE"'], env=env, capture_output=True)
        assert done.stdout.decode().endswith("S3cret\\:pw\\\\#'q\n")
    assert not path.exists()


def test_a_password_with_a_line_break_is_refused_before_any_tool_runs() -> None:
    with pytest.raises(ToolFailed, match="line break"):
        ToolProcess(["true"], env={"PGPASSWORD": "a\nb"})
