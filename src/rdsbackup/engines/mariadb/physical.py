"""Physical MariaDB sets: ``mariadb-backup --backup --stream=xbstream`` out,
``mbstream -x`` + ``mariadb-backup --prepare`` back.

Objects of a set:

``data.xbstream``
    the raw xbstream mariadb-backup writes to stdout (the whole data directory copy; for
    an incremental set, ``.delta`` files holding the InnoDB pages changed since the
    parent's ``to_lsn`` plus full copies of every non-InnoDB file);
``xtrabackup_checkpoints``, ``xtrabackup_info``
    mariadb-backup's small metadata files from ``--extra-lsndir``: the LSN range and a
    human record. Both are also inside the xbstream.

Kinds and strategies:

* full, instance: ``mariadb-backup --backup``;
* incremental: ``--incremental-lsn=<parent to_lsn>``; ``extra`` carries ``from_lsn`` /
  ``to_lsn`` so a chain can be checked before anything is extracted;
* per database (``--databases``): the chosen databases plus the system schemas
  (``mysql``, ``performance_schema``, ``sys``) and the InnoDB system tablespace and
  redo log, which a partial copy always holds. A restored partial set starts like any
  server and serves the chosen databases; the other databases' directories are absent,
  but InnoDB's data dictionary (in ``ibdata1``) still lists their tables. Such a table
  is an orphan: reading it fails with "tablespace is missing", and it must be removed
  with ``DROP TABLE IF EXISTS db.t`` (after ``CREATE DATABASE db``) before a table of
  that name can be created again.

Restoring a chain extracts the full set into the data directory and prepares it, then
extracts each incremental into a scratch directory beside the data directory and
applies it with ``--prepare --incremental-dir`` (MariaDB 10.2+ needs no
``--apply-log-only``). Preparing consumes the ``.delta`` files, which is why they are
always extracted copies: stored objects are only ever read.
"""

from __future__ import annotations

import io
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rdsbackup.engines.base import (
    BackupKind,
    BackupPlan,
    BackupStrategy,
    EngineError,
    ObjectSink,
    ObjectSource,
    ProgressCallback,
    ServerAccess,
    ToolFailed,
)
from rdsbackup.engines.mariadb.sql import SnapshotSession
from rdsbackup.engines.tools import (
    ToolProcess,
    chown_for,
    feed,
    find_binary,
    mysql_option_file,
    tool_version,
)
from rdsbackup.manifest import Manifest

DATA_OBJECT = "data.xbstream"
CHECKPOINTS = "xtrabackup_checkpoints"
INFO = "xtrabackup_info"
SUCCESS = "completed OK!"
EXIT_TIMEOUT = 600.0
"""Seconds a tool may take to exit once its output stream has ended."""
PARTIAL_SYSTEM_SCHEMAS = ("mysql", "performance_schema", "sys")
"""Always in a per-database set: without ``mysql`` the restored server cannot start."""

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
    fingerprints: dict[str, list[object]] | None = None


BLOCK_COMMIT_HELD = "Acquired locks for BACKUP STAGE BLOCK_COMMIT"
"""mariadb-backup's line once no transaction can commit: the backup's consistent point."""


def backup_binary() -> str:
    return find_binary("mariadb-backup", "mariabackup")


def backup_args(
    binary: str, options: Path, data_dir: Path, scratch: Path, plan: BackupPlan
) -> list[str]:
    args = [
        binary,
        f"--defaults-extra-file={options}",
        "--backup",
        "--stream=xbstream",
        f"--parallel={max(1, plan.parallel)}",
        f"--datadir={data_dir}",
        f"--target-dir={scratch}",
        f"--extra-lsndir={scratch}",
    ]
    if plan.kind == BackupKind.INCREMENTAL:
        args.append(f"--incremental-lsn={parent_lsn(plan.parent)}")
    if plan.strategy == BackupStrategy.DB:
        names = [*plan.databases, *(s for s in PARTIAL_SYSTEM_SCHEMAS if s not in plan.databases)]
        args.append(f"--databases={' '.join(names)}")
    return args


def parent_lsn(parent: Manifest | None) -> str:
    """The ``to_lsn`` an incremental continues from; EngineError when there is none."""
    lsn = parent.extra.get("to_lsn", "") if parent is not None else ""
    if not lsn.isdigit():
        raise EngineError("an incremental backup needs a physical parent set with a to_lsn")
    return lsn


def backup_physical(
    access: ServerAccess, plan: BackupPlan, sink: ObjectSink, on_phase: ProgressCallback
) -> PhysicalOutcome:
    """Stream a physical copy (full, incremental or partial) of the server into ``sink``."""
    if access.data_dir is None:
        raise EngineError("a physical backup needs the server's data directory")
    binary = backup_binary()
    with (
        _scratch_dir(access.os_user) as scratch,
        mysql_option_file(
            access.host, access.port, access.user, access.password, owner=access.os_user
        ) as options,
        ExitStack() as stack,
    ):
        snapshot = stack.enter_context(SnapshotSession(access)) if plan.fingerprint else None
        args = backup_args(binary, options, access.data_dir, scratch, plan)
        on_phase("Uploading")
        watch = _open_when_commits_blocked(snapshot) if snapshot else None
        with ToolProcess(args, cwd=scratch, os_user=access.os_user, on_line=watch) as tool:
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
        extra = parse_checkpoints(checkpoints.decode("utf-8", "replace"))
        fingerprints = None
        if snapshot is not None:
            fingerprints, missed = proven_fingerprints(snapshot, position, plan)
            if missed:
                extra["fingerprints"] = f"not taken: {missed}"
    return PhysicalOutcome(
        tool_versions={"mariadb-backup": tool_version(binary)},
        position=position,
        extra=extra,
        consistent_time=finished,
        fingerprints=fingerprints,
    )


def _open_when_commits_blocked(snapshot: SnapshotSession) -> Callable[[str], None]:
    def watch(line: str) -> None:
        if BLOCK_COMMIT_HELD in line and not snapshot.opened:
            snapshot.open()

    return watch


def proven_fingerprints(
    snapshot: SnapshotSession, position: dict[str, str], plan: BackupPlan
) -> tuple[dict[str, list[object]] | None, str]:
    """The backed-up tables' fingerprints, when the snapshot provably sees the backup's
    consistent point: it opened while mariadb-backup held BLOCK_COMMIT, and its binlog
    position is the one the backup recorded. Else None and why."""
    if not snapshot.opened:
        return None, "no snapshot opened while mariadb-backup blocked commits"
    seen = snapshot.binlog_position()
    wanted = {k: position.get(k, "") for k in ("binlog_file", "binlog_pos")}
    if not seen:
        return None, "the server has no binary log to prove the snapshot's position"
    if seen != wanted:
        return None, f"the snapshot opened at {seen}, the backup is at {wanted}"
    databases = plan.databases if plan.strategy == BackupStrategy.DB else None
    return snapshot.fingerprints(snapshot.base_tables(databases)), ""


def check_chain(manifests: Sequence[Manifest]) -> None:
    """A full physical set, then incrementals each starting where the previous ended."""
    first = manifests[0]
    if first.kind != BackupKind.FULL or first.strategy != BackupStrategy.INSTANCE:
        raise EngineError("a restore chain must start with a full instance set")
    for n, (before, after) in enumerate(itertools.pairwise(manifests), 1):
        if after.kind != BackupKind.INCREMENTAL:
            raise EngineError(f"set {n + 1} of the chain is not an incremental set")
        if after.extra.get("from_lsn") != before.extra.get("to_lsn"):
            raise EngineError(
                f"set {n + 1} of the chain starts at LSN {after.extra.get('from_lsn')}"
                f" but set {n} ends at LSN {before.extra.get('to_lsn')}"
            )


def restore_chain(sets: Sequence[tuple[Manifest, ObjectSource]], data_dir: Path) -> None:
    """Materialise ``data_dir`` from a full set and the incrementals built on it.

    The tools run as the owner of ``data_dir`` (when we are root), so the files they
    write belong to whoever will run the server on it.
    """
    if len(sets) > 1:
        check_chain([m for m, _ in sets])
    require_empty(data_dir)
    owner = owner_of(data_dir)
    (_, full), *incrementals = sets
    extract(full, data_dir, owner)
    prepare(data_dir, owner)
    for _, source in incrementals:
        with _incremental_dir(data_dir, owner) as scratch:
            extract(source, scratch, owner)
            prepare(data_dir, owner, incremental_dir=scratch)


def require_empty(data_dir: Path) -> None:
    if not data_dir.is_dir() or any(data_dir.iterdir()):
        raise EngineError(f"{data_dir} must be an existing, empty directory")


def extract(source: ObjectSource, target: Path, owner: str | None) -> None:
    """``mbstream -x`` the set's xbstream into ``target``.

    A zstd object goes through ``zstd -d`` piped straight into mbstream: the service
    only reads and hashes the stored (compressed) bytes, and the decompressed stream
    never passes through Python. When a tool fails, the stored object is checked again,
    so that a corrupt object is reported by name rather than as zstd's complaint."""
    args = [find_binary("mbstream"), "-x", "-C", str(target)]
    stored, compression = source.open_stored(DATA_OBJECT)
    if compression != "zstd":
        stored.close()
        with ToolProcess(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=target, os_user=owner
        ) as tool:
            with source.open(DATA_OBJECT) as reader:
                feed(reader, tool)
            check_tool(tool)
        return
    unzstd = [find_binary("zstd"), "-d", "-q", "-c"]
    with (
        stored,
        ToolProcess(unzstd, stdin=subprocess.PIPE) as decompress,
        ToolProcess(
            args, stdin=decompress.stdout, stdout=subprocess.DEVNULL, cwd=target, os_user=owner
        ) as tool,
    ):
        decompress.stdout.close()  # mbstream holds the read end
        feed(stored, decompress)
        try:
            check_tool(tool)  # first: its error says more than zstd's broken pipe
            check_tool(decompress)
        except ToolFailed:
            source.verify(DATA_OBJECT)
            raise


def prepare(data_dir: Path, owner: str | None, incremental_dir: Path | None = None) -> None:
    args = [backup_binary(), "--prepare", f"--target-dir={data_dir}"]
    if incremental_dir is not None:
        args.append(f"--incremental-dir={incremental_dir}")
    with ToolProcess(args, stdout=subprocess.DEVNULL, cwd=data_dir, os_user=owner) as tool:
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


@contextmanager
def _incremental_dir(data_dir: Path, owner: str | None) -> Iterator[Path]:
    """A scratch directory for one extracted incremental: beside ``data_dir`` (the same
    file system, which will hold the data anyway), else in the system temp folder."""
    try:
        path = Path(tempfile.mkdtemp(prefix=".rdsbackup-incremental-", dir=data_dir.parent))
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="rdsbackup-incremental-"))
    try:
        chown_for(path, owner)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owner_of(path: Path) -> str | None:
    """The name of the user owning ``path``, when we are root and it is someone else."""
    uid = path.stat().st_uid
    if os.geteuid() != 0 or uid == 0:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError as e:
        raise EngineError(f"{path} is owned by uid {uid}, which has no user name") from e
