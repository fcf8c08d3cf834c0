"""Processes and files of local servers: liveness from /proc, ownership, permissions."""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

children: dict[int, subprocess.Popen[bytes]] = {}
"""Servers this process started, kept so that they are reaped once they exit."""


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL", "MARIADB"))}
    env["LC_ALL"] = "C.UTF-8"
    env.update(extra or {})
    return env


def _reap(pid: int) -> None:
    child = children.get(pid)
    if child is not None and child.poll() is not None:
        del children[pid]


def process_alive(pid: int) -> bool:
    """True when ``pid`` is a live process (a zombie counts as dead)."""
    _reap(pid)
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def process_args(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a for a in re.split(r"[\0 ]", raw.decode("utf-8", "replace")) if a]


def process_owner(pid: int) -> str | None:
    try:
        return pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


def _searchable_by(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _user_ids(user: str) -> tuple[int, set[int]]:
    pw = pwd.getpwnam(user)
    return pw.pw_uid, set(os.getgrouplist(user, pw.pw_gid))


def chown_tree(path: Path, user: str) -> None:
    """``chown -R user:<user's group> path`` (symlinks themselves, not their targets)."""
    pw = pwd.getpwnam(user)
    owner = (pw.pw_uid, pw.pw_gid)

    def fix(p: str) -> None:
        st = os.lstat(p)
        if (st.st_uid, st.st_gid) != owner:
            os.lchown(p, *owner)

    fix(str(path))
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            fix(os.path.join(root, name))


def first_unsearchable(paths: Iterable[Path], user: str) -> tuple[Path, os.stat_result] | None:
    """The first existing folder of ``paths`` (outermost first) ``user`` cannot enter."""
    uid, gids = _user_ids(user)
    for path in sorted(paths, key=lambda p: len(p.parts)):
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not _searchable_by(st, uid, gids):
            return path, st
    return None
