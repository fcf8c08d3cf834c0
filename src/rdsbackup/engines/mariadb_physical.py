"""Physical MariaDB sets: ``mariadb-backup --backup --stream=xbstream`` out,
``mbstream -x`` + ``mariadb-backup --prepare`` back.

Objects of a set:

``data.xbstream``
    the raw xbstream mariadb-backup writes to stdout (the whole data directory copy);
``xtrabackup_checkpoints``, ``xtrabackup_info``
    mariadb-backup's small metadata files from ``--extra-lsndir``: the LSN range (a later
    incremental's ``--incremental-basedir`` needs the checkpoints file) and a human record.
    Both are also inside the xbstream.
"""

from __future__ import annotations

import io
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rdsbackup.engines.base import (
    BackupPlan,
    EngineError,
    ObjectSink,
    ObjectSource,
    ProgressCallback,
    ServerAccess,
    ToolFailed,
)
from rdsbackup.engines.tools import (
    ToolProcess,
    chown_for,
    feed,
    find_binary,
    mysql_option_file,
    tool_version,
)

DATA_OBJECT = "data.xbstream"
CHECKPOINTS = "xtrabackup_checkpoints"
INFO = "xtrabackup_info"
SUCCESS = "completed OK!"
EXIT_TIMEOUT = 600.0
"""Seconds a tool may take to exit once its output stream has ended."""

_POSITION = re.compile(
    r"filename '(?P<file>[^']*)', position '(?P<pos>\d+)'"
    r"(?:, GTID of the last change '(?P<gtid>[^']*)')?"
)


@dataclass(frozen=True)
class PhysicalOutcome:
    tool_versions: dict[str, str]
    position: dict[str, str]
    extra: dict[str, str]
    consistent_time: datetime


def backup_binary() -> str:
    return find_binary("mariadb-backup", "mariabackup")


def backup_physical(
    access: ServerAccess, plan: BackupPlan, sink: ObjectSink, on_phase: ProgressCallback
) -> PhysicalOutcome:
    """Stream a full physical copy of the server's data directory into ``sink``."""
    if access.data_dir is None:
        raise EngineError("a physical backup needs the server's data directory")
    binary = backup_binary()
    with (
        _scratch_dir(access.os_user) as scratch,
        mysql_option_file(
            access.host, access.port, access.user, access.password, owner=access.os_user
        ) as options,
    ):
        args = [
            binary,
            f"--defaults-extra-file={options}",
            "--backup",
            "--stream=xbstream",
            f"--parallel={max(1, plan.parallel)}",
            f"--datadir={access.data_dir}",
            f"--target-dir={scratch}",
            f"--extra-lsndir={scratch}",
        ]
        on_phase("Uploading")
        with ToolProcess(args, cwd=scratch, os_user=access.os_user) as tool:
            sink.put(DATA_OBJECT, tool.stdout)
            finished = datetime.now(UTC)
            check_tool(tool, SUCCESS)
        on_phase("Checking")
        checkpoints = _read_metadata(scratch / CHECKPOINTS)
        info = _read_metadata(scratch / INFO) if (scratch / INFO).is_file() else b""
        sink.put(CHECKPOINTS, io.BytesIO(checkpoints))
        if info:
            sink.put(INFO, io.BytesIO(info))
        position = parse_position(info.decode("utf-8", "replace"), list(tool.lines))
    return PhysicalOutcome(
        tool_versions={"mariadb-backup": tool_version(binary)},
        position=position,
        extra=parse_checkpoints(checkpoints.decode("utf-8", "replace")),
        consistent_time=finished,
    )


def restore_physical(source: ObjectSource, data_dir: Path) -> None:
    """Extract ``data.xbstream`` into the empty ``data_dir`` and prepare it.

    The tools run as the owner of ``data_dir`` (when we are root), so the files they
    write belong to whoever will run the server on it.
    """
    if not data_dir.is_dir() or any(data_dir.iterdir()):
        raise EngineError(f"{data_dir} must be an existing, empty directory")
    owner = _owner(data_dir)
    args = [find_binary("mbstream"), "-x", "-C", str(data_dir)]
    with ToolProcess(
        args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=data_dir, os_user=owner
    ) as tool:
        with source.open(DATA_OBJECT) as reader:
            feed(reader, tool)
        check_tool(tool)
    prepare = [backup_binary(), "--prepare", f"--target-dir={data_dir}"]
    with ToolProcess(prepare, stdout=subprocess.DEVNULL, cwd=data_dir, os_user=owner) as tool:
        check_tool(tool, SUCCESS)


def check_tool(tool: ToolProcess, success_marker: str | None = None) -> None:
    """Wait for ``tool``; raise ToolFailed (its own error line) unless it said it succeeded."""
    try:
        tool.check(EXIT_TIMEOUT, success_marker=success_marker)
    except subprocess.TimeoutExpired as e:
        tool.kill()
        raise ToolFailed(f"{tool.name} did not exit within {EXIT_TIMEOUT:.0f} s") from e


def parse_checkpoints(text: str) -> dict[str, str]:
    """``from_lsn``, ``to_lsn``, ``last_lsn`` and ``backup_type`` of xtrabackup_checkpoints."""
    values = dict(_key_values(text))
    missing = [k for k in ("backup_type", "from_lsn", "to_lsn") if not values.get(k)]
    if missing:
        raise ToolFailed(f"{CHECKPOINTS} lacks {', '.join(missing)}")
    wanted = ("backup_type", "from_lsn", "to_lsn", "last_lsn")
    return {k: values[k] for k in wanted if values.get(k)}


def parse_position(info: str, stderr: list[str]) -> dict[str, str]:
    """binlog_file/binlog_pos/gtid from xtrabackup_info, else from the tool's log.

    Empty when the server does not write a binary log.
    """
    candidates = [v for k, v in _key_values(info) if k == "binlog_pos"]
    candidates += [ln for ln in reversed(stderr) if "binlog position:" in ln]
    for text in candidates:
        m = _POSITION.search(text)
        if m:
            found = {"binlog_file": m["file"], "binlog_pos": m["pos"], "gtid": m["gtid"] or ""}
            return {k: v for k, v in found.items() if v}
    return {}


def _key_values(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            yield key.strip(), value.strip()


def _read_metadata(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ToolFailed(f"mariadb-backup left no {path.name}: {e.strerror}") from e


@contextmanager
def _scratch_dir(os_user: str | None) -> Iterator[Path]:
    """A private directory for --target-dir/--extra-lsndir, writable by ``os_user``."""
    path = Path(tempfile.mkdtemp(prefix="rdsbackup-mariadb-"))
    try:
        chown_for(path, os_user)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _owner(path: Path) -> str | None:
    """The name of the user owning ``path``, when we are root and it is someone else."""
    uid = path.stat().st_uid
    if os.geteuid() != 0 or uid == 0:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError as e:
        raise EngineError(f"{path} is owned by uid {uid}, which has no user name") from e
