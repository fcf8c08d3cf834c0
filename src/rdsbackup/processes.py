"""Facts about other processes on this machine."""

from __future__ import annotations

import os
import signal
from contextlib import suppress


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def children(parent: int | None = None) -> list[int]:
    """The pids of ``parent``'s (default: this process's) direct children, from /proc."""
    parent = os.getpid() if parent is None else parent
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_tool_groups() -> list[int]:
    """SIGKILL the process group of every child that leads a group of its own inside this
    process's session: the engines' tools (each runs in its own group). Local servers run
    in sessions of their own and are left alone. Returns the groups killed."""
    session, group = os.getsid(0), os.getpgid(0)
    killed: list[int] = []
    for pid in children():
        try:
            if os.getpgid(pid) == pid != group and os.getsid(pid) == session:
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
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
