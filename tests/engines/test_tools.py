"""ToolProcess: the process group it is killed by, the session it shares with the
service, and the stderr watcher."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from rdsbackup.engines.base import ToolFailed
from rdsbackup.engines.tools import ToolProcess


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
