"""Where local servers' folders live: somewhere their OS users can enter.

As root, the servers run as ``mysql`` / ``postgres``, which must traverse every parent of
their data directory. A checkout under ``/root`` or a ``mktemp -d`` folder (mode 0700)
is closed to them, so the default ``<state_dir>/instances`` then moves to
``/var/lib/rdsbackup/<hash of state_dir>/instances`` (one per state folder, so two
checkouts never share it), linked from ``<state_dir>/instances``. An ``instances_dir``
the operator set is used as given, or refused at once with what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import stat
from pathlib import Path

from rdsbackup.config import Settings
from rdsbackup.instances.servers_os import first_unsearchable

log = logging.getLogger(__name__)

SYSTEM_HOME = Path("/var/lib/rdsbackup")
OWNER_FILE = "state_dir"
"""In ``SYSTEM_HOME/<digest>/``: the state folder of the service the instances belong to."""
SERVER_USERS = ("mysql", "postgres")
"""The OS users local servers run as when the service runs as root."""


class InstancesDirUnreachable(Exception):
    """The configured ``instances_dir`` cannot be entered by a server's OS user."""


def instances_home(settings: Settings, system_home: Path = SYSTEM_HOME) -> Path:
    wanted = settings.resolved_instances_dir
    blocked = _blocked(wanted)
    if blocked is None:
        return wanted
    if settings.instances_dir is not None:
        raise InstancesDirUnreachable(
            f"instances_dir {wanted} cannot hold local servers: {blocked}. Set instances_dir"
            " (RDSBACKUP_INSTANCES_DIR) to a folder whose parents all allow others in"
            f" (o+x), e.g. {system_home}/instances, or leave it unset to use one there."
        )
    home = system_home / _digest(settings.state_dir) / "instances"
    for d in (system_home, home.parent, home):
        d.mkdir(exist_ok=True)
        d.chmod(0o711)
    owner = home.parent / OWNER_FILE
    if not owner.exists():
        owner.write_text(f"{settings.state_dir.resolve()}\n")  # whose folder this is
    link = settings.state_dir / "instances"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(home)  # found from the state folder; ``make clean`` removes it
    log.info("local instances live in %s: %s (set instances_dir to choose)", home, blocked)
    return home


def _blocked(path: Path) -> str | None:
    """Why a server's OS user could not reach ``path``, or None when every one can."""
    if os.geteuid() != 0:
        return None  # the servers run as this user, who owns the folder
    for user in SERVER_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        found = first_unsearchable([path, *path.parents], user)
        if found is not None:
            where, st = found
            owner = pwd.getpwuid(st.st_uid).pw_name
            mode = stat.S_IMODE(st.st_mode)
            return f"{user} cannot enter {where} (mode {mode:o}, owner {owner})"
    return None


def _digest(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
