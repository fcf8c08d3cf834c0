"""Facts about other processes on this machine, and this process's own children."""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import suppress

log = logging.getLogger(__name__)


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state, parent, group, session, ..."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(parent: int | None = None) -> list[int]:
    """The pids of ``parent``'s (default: this process's) live children, from /proc."""
    parent = os.getpid() if parent is None else parent
    found: list[int] = []
    for entry in os.scandir("/proc"):
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def tool_groups() -> list[int]:
    """Children leading a process group of their own inside this process's session: the
    engines' tools (each runs in its own group). Local servers run in sessions of their
    own and are not among them."""
    session, group = os.getsid(0), os.getpgid(0)
    found: list[int] = []
    for pid in children():
        with suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid != group and os.getsid(pid) == session:
                found.append(pid)
    return found


def kill_tool_groups() -> list[int]:
    """SIGKILL every :func:`tool_groups` group; returns the groups killed."""
    killed: list[int] = []
    for pid in tool_groups():
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def session_leaders() -> list[int]:
    """Children leading sessions of their own: the local database servers this process
    started (instances, clones, scratch servers of restores)."""
    leaders: list[int] = []
    for pid in children():
        with suppress(ProcessLookupError, PermissionError):
            if os.getsid(pid) == pid:
                leaders.append(pid)
    return leaders


def stop_leftover_servers(timeout: float = 5) -> None:
    """Servers this process started that no instance owns any more (a restore's scratch
    server whose worker did not clean up): SIGTERM, then SIGKILL after ``timeout``."""
    leaders = session_leaders()
    for pid in leaders:
        log.info("stopping leftover server process %s", pid)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(running(pid) for pid in leaders):
        time.sleep(0.05)
    for pid in leaders:
        with suppress(ProcessLookupError, PermissionError):
            if running(pid):
                os.killpg(pid, signal.SIGKILL)
