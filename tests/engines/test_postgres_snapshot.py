"""Snapshot backups of PostgreSQL: the data directory copied between pg_backup_start and
pg_backup_stop with its WAL, restored through ``restore_physical`` into fresh servers.
(Under concurrent writes: ``test_postgres.py::test_backup_under_load_*``; faults:
``test_postgres_faults.py``.)"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from rdsbackup.engines.base import (
    BackupMethod,
    BackupPlan,
    EngineError,
    ServerAccess,
    ToolFailed,
    UnsupportedPlan,
)
from rdsbackup.engines.postgres import datadir as postgres_datadir
from rdsbackup.engines.postgres.datadir import Copied, tar_chunks, wal_segments, walk
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import Manifest, StoredObject
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader, SetWriter
from tests.engines.test_postgres import (
    ENGINE,
    PG,
    SAMPLE,
    Backup,
    connect,
    lsn,
    query,
    restore_physical,
    take,
    user_databases,
)
from tests.fixtures.dataset import fingerprint
from tests.fixtures.servers import ServerFactory

SNAPSHOT = BackupPlan(BackupMethod.SNAPSHOT)
SEGMENT = 16 << 20


def members(backup: Backup) -> list[str]:
    with backup.reader().open("base.tar") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        return [m.name.rstrip("/") for m in tar]


def test_snapshot_restores_every_table(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    source = postgres.access()
    before = fingerprint(PG, source)
    expected = ENGINE.expected_bytes(source, SNAPSHOT)
    started = time.monotonic()
    backup = take(tmp_path, source, SNAPSHOT)
    elapsed = time.monotonic() - started
    result = backup.result
    assert result is not None
    assert backup.names() == {"base.tar.zst"}
    assert result.engine_version == postgres.version()
    assert result.databases == sorted(SAMPLE)
    position = result.consistent_position
    assert set(position) == {"start_lsn", "stop_lsn", "timeline"}
    assert lsn(position["start_lsn"]) < lsn(position["stop_lsn"])
    assert position["timeline"] == "1"
    assert result.consistent_time is not None
    assert result.consistent_time <= datetime.now(UTC)
    assert set(result.tool_versions) == {"tar"}
    assert result.tool_versions["tar"].startswith("tar (GNU tar)")
    assert backup.phases == ["Preparing", "Uploading"]
    assert set(result.extra) == {"copy", "in_backup_seconds", "wal_segments"}
    assert result.extra["copy"] == "stream"  # the tests' usual file system makes no clones
    assert 0 < float(result.extra["in_backup_seconds"]) < elapsed
    raw = backup.manifest.object("base.tar.zst").raw_size
    assert abs(raw - expected) < 0.05 * expected

    names = members(backup)
    segments = wal_segments(1, position["start_lsn"], position["stop_lsn"], SEGMENT)
    assert result.extra["wal_segments"] == str(len(segments))
    assert names[-1] == "backup_manifest"
    tail = ["global/pg_control", "backup_label", "pg_wal", "pg_wal/archive_status"]
    assert names[names.index("global/pg_control") :][:4] == tail
    for segment in segments:
        assert f"pg_wal/{segment}" in names
        assert f"pg_wal/archive_status/{segment}.done" in names
    for skipped in ("postmaster.pid", "postmaster.opts", "pg_internal.init"):
        assert not [n for n in names if n.endswith(skipped)]
    assert "pg_replslot" in names and not [n for n in names if n.startswith("pg_replslot/")]
    assert "base" in names and "PG_VERSION" in names

    target = restore_physical(backup, server_factory)
    assert fingerprint(PG, target.access()) == before
    assert user_databases(target.access()) == set(SAMPLE)
    assert not (target.data_dir / "backup_manifest").exists()
    assert (target.data_dir / "backup_label.old").exists()  # recovery started from it
    log = target.log_file.read_text()
    assert "consistent recovery state reached" in log
    assert f"end LSN {position['stop_lsn']}" in log

    # the set's backup_manifest makes pg_verifybackup refuse a copy missing WAL
    manifest, reader = rewritten(backup, tmp_path / "edited", lambda name: name in segments[:1])
    with pytest.raises(ToolFailed, match=r"^pg_verifybackup exited with 1: .*WAL parsing failed"):
        ENGINE.restore_physical(manifest, reader, tmp_path / "restored", [])


def rewritten(
    backup: Backup, where: Path, drop: Callable[[str], bool]
) -> tuple[Manifest, SetReader]:
    """The set with the members of base.tar named by ``drop`` left out."""
    buffer = io.BytesIO()
    with (
        backup.reader().open("base.tar") as f,
        tarfile.open(fileobj=f, mode="r|") as source,
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as out,
    ):
        for member in source:
            if not drop(member.name.removeprefix("pg_wal/")):
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    writer = SetWriter(LocalStorage(where), "set")
    writer.put_bytes("base.tar", buffer.getvalue())
    manifest = dataclasses.replace(backup.manifest, objects=writer.objects)
    return manifest, SetReader(LocalStorage(where), "set", manifest)


class WaitingSink:
    """Stores like SetWriter, but stops reading after the first MiB until ``go`` is set."""

    def __init__(self, inner: SetWriter, go: threading.Event, reading: threading.Event) -> None:
        self.inner, self.go, self.reading = inner, go, reading

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        return self.inner.put(name, _Paused(stream, self.go, self.reading), inline=inline)  # type: ignore[arg-type]


class _Paused:
    def __init__(self, inner: BinaryIO, go: threading.Event, reading: threading.Event) -> None:
        self.inner, self.go, self.reading, self.done = inner, go, reading, 0

    def read(self, size: int = -1) -> bytes:
        if self.done >= 1 << 20:
            self.reading.set()
            assert self.go.wait(60)
        data = self.inner.read(size)
        self.done += len(data)
        return data


def test_snapshot_keeps_its_wal_through_checkpoints(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """Segment switches and checkpoints while the copy runs would recycle the WAL the
    backup starts from; the slot keeps it, and the set restores."""
    server = server_factory(PG)
    server.start()
    access = server.access()
    load_sample(PG, access, rows=200, databases=("shop",))
    with connect(access, "shop") as conn:
        conn.execute(b"CREATE TABLE during (id int PRIMARY KEY)")
    go, reading = threading.Event(), threading.Event()

    def switch_and_checkpoint() -> None:
        assert reading.wait(60)
        with connect(access, "shop") as conn:
            for i in range(5):
                conn.execute(b"INSERT INTO during VALUES (%s)", (i,))
                conn.execute(b"SELECT pg_switch_wal()")
                conn.execute(b"CHECKPOINT")
        go.set()

    worker = threading.Thread(target=switch_and_checkpoint)
    worker.start()
    sink = WaitingSink(SetWriter(LocalStorage(tmp_path / "storage"), "set"), go, reading)
    backup = Backup(LocalStorage(tmp_path / "storage"), "set", SNAPSHOT)
    try:
        backup.result = ENGINE.backup(access, SNAPSHOT, sink, backup.phases.append)
    finally:
        go.set()
        worker.join()
    backup.writer = sink.inner
    assert backup.result is not None
    assert int(backup.result.extra["wal_segments"]) >= 6
    assert query(access, "SELECT count(*) FROM pg_replication_slots") == [(0,)]
    start = wal_segments(1, backup.result.consistent_position["start_lsn"], "0/1", SEGMENT)[0]
    assert (server.data_dir / "pg_wal" / start).exists()
    with connect(access) as conn:
        conn.execute(b"CHECKPOINT")  # without the slot, this is what removes it
    assert not (server.data_dir / "pg_wal" / start).exists()
    target = restore_physical(backup, server_factory)
    assert query(target.access(), "SELECT count(*) FROM during", "shop") == [(5,)]
    assert fingerprint(PG, target.access()) == fingerprint(PG, access)


# -- refusals ----------------------------------------------------------------------------


def _with_data_dir(access: ServerAccess, data_dir: Path | None) -> ServerAccess:
    return ServerAccess(
        access.host, access.port, access.user, access.password, data_dir, access.os_user
    )


def test_snapshot_needs_the_data_directory_here(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    access = postgres.access()
    ENGINE.check_plan(SNAPSHOT, access)
    other = server_factory(PG)  # initialised, never started: another system identifier
    cases = [
        (None, "must be on this machine; no local data directory"),
        (tmp_path, "is not a PostgreSQL data directory here"),
        (other.data_dir, "data directory is .*, not "),
    ]
    for data_dir, reason in cases:
        elsewhere = _with_data_dir(access, data_dir)
        with pytest.raises(UnsupportedPlan, match=reason) as caught:
            ENGINE.check_plan(SNAPSHOT, elsewhere)
        assert caught.value.what == "method"
        assert "BackupMethod=Physical" in caught.value.reason
        sink = SetWriter(LocalStorage(tmp_path / "storage"), "set")
        with pytest.raises(UnsupportedPlan):
            ENGINE.backup(elsewhere, SNAPSHOT, sink, lambda _: None)
        assert sink.objects == []
    with connect(access) as conn:
        conn.execute(b"CREATE ROLE plain LOGIN PASSWORD 'plain-pw'")
    try:
        plain = ServerAccess(access.host, access.port, "plain", "plain-pw", access.data_dir)
        with pytest.raises(UnsupportedPlan, match="need a superuser") as caught:
            ENGINE.check_plan(SNAPSHOT, plain)
        assert caught.value.what == "method"
    finally:
        with connect(access) as conn:
            conn.execute(b"DROP ROLE plain")


def test_snapshot_refuses_a_copy_of_another_server(server_factory: ServerFactory) -> None:
    """The server's own path, but another cluster's files behind it (the system
    identifiers differ): the copy would not be of this server."""
    server, other = server_factory(PG), server_factory(PG)
    server.start()
    ENGINE.check_plan(SNAPSHOT, server.access())
    moved = server.data_dir.with_name("data.moved")
    server.data_dir.rename(moved)  # the running server keeps its files
    try:
        server.data_dir.symlink_to(other.data_dir)
        with pytest.raises(UnsupportedPlan, match="belongs to another server") as caught:
            ENGINE.check_plan(SNAPSHOT, server.access())
        assert caught.value.what == "method"
    finally:
        if server.data_dir.is_symlink():
            server.data_dir.unlink()
        moved.rename(server.data_dir)


# -- the data directory walk, the tar tool, WAL names ------------------------------------


def _files(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x" * 10)


def test_walk_leaves_out_what_pg_basebackup_leaves_out(tmp_path: Path) -> None:
    kept = [
        "PG_VERSION",
        "postgresql.auto.conf",
        "base/1/1259",
        "base/1/1259_fsm",
        "base/1/1259.1",
        "base/1/16390_init",
        "base/1/16390_init.1",
        "pg_xact/0000",
        "pg_logical/replorigin_checkpoint",
        "global/1260",
        "global/pg_control",
    ]
    left_out = [
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "tablespace_map",
        "backup_manifest",
        "postgresql.auto.conf.tmp",
        "current_logfiles.tmp",
        "pg_wal/000000010000000000000001",
        "pg_wal/archive_status/000000010000000000000001.done",
        "pg_replslot/slot/state",
        "pg_stat_tmp/global.stat",
        "pg_dynshmem/mmap.1",
        "pg_notify/0000",
        "pg_serial/0000",
        "pg_snapshots/0000-1",
        "pg_subtrans/0000",
        "base/1/pg_internal.init",
        "global/pg_internal.init.123",
        "base/pgsql_tmp/pgsql_tmp12.0",
        "base/1/t3_16400",
        "base/1/t3_16400_fsm",
        "base/1/16390",  # an unlogged relation's forks, but its init fork
        "base/1/16390.1",
        "base/1/16390_fsm",
        "base/1/16390_vm",
    ]
    _files(tmp_path, *kept, *left_out)
    entries = walk(tmp_path)
    files = [e.path for e in entries if not e.is_dir]
    folders = {e.path for e in entries if e.is_dir}
    assert sorted(files) == sorted(kept)
    assert files[-1] == "global/pg_control"
    assert folders == {
        "base",
        "base/1",
        "global",
        "pg_xact",
        "pg_logical",
        "pg_replslot",
        "pg_stat_tmp",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_subtrans",
    }
    paths = [e.path for e in entries]
    for entry in entries:  # parents first
        parent = entry.path.rpartition("/")[0]
        assert not parent or paths.index(parent) < paths.index(entry.path)
    assert postgres_datadir.tar_bytes(entries) == len(entries) * 512 + len(files) * 512

    (tmp_path / "base" / "1" / "16500").symlink_to(tmp_path / "PG_VERSION")
    with pytest.raises(EngineError, match=r"symbolic link, base/1/16500"):
        walk(tmp_path)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the data directory's owner (when we are root: postgres) can read."""
    path = Path(tempfile.mkdtemp(prefix="rdsbackup-tar-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _tar(root: Path, paths: list[str], *, vanish_ok: bool) -> tuple[bytes, Copied]:
    copied = Copied()
    owner = "postgres" if os.geteuid() == 0 else None
    data = b"".join(tar_chunks(root, paths, copied, os_user=owner, vanish_ok=vanish_ok))
    return data, copied


def test_tar_chunks_skips_vanished_files_only_when_told(shared_dir: Path) -> None:
    _files(shared_dir, "a/one", "two")
    for path in (shared_dir / "a", shared_dir / "a" / "one", shared_dir / "two"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    data, copied = _tar(shared_dir, ["a", "a/one", "gone", "two"], vanish_ok=True)
    assert len(data) % 512 == 0
    assert data[-1024:] != bytes(1024)  # no end-of-archive: more members may follow
    archive = data + postgres_datadir.END_OF_ARCHIVE
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        assert [m.name for m in tar] == ["a", "a/one", "two"]
    assert set(copied.files) == {"a/one", "two"}
    assert copied.files["two"][0] == 10
    with pytest.raises(ToolFailed, match=r"^tar exited with 2: .*gone: Cannot stat"):
        _tar(shared_dir, ["two", "gone"], vanish_ok=False)


def test_tar_chunks_fails_on_an_unreadable_file(shared_dir: Path) -> None:
    _files(shared_dir, "secret")
    (shared_dir / "secret").chmod(0)
    if os.geteuid() == 0:
        os.chown(shared_dir / "secret", 0, 0)
    with pytest.raises(ToolFailed, match=r"^tar could not read .*secret: .*Permission denied"):
        _tar(shared_dir, ["secret"], vanish_ok=True)


def test_wal_segment_names() -> None:
    assert wal_segments(1, "0/3000028", "0/3000100", SEGMENT) == ["000000010000000000000003"]
    # a stop point on a segment boundary ends in the segment before it
    assert wal_segments(2, "0/3000028", "0/5000000", SEGMENT) == [
        "000000020000000000000003",
        "000000020000000000000004",
    ]
    assert wal_segments(1, "0/FF000028", "1/00000100", SEGMENT) == [
        "0000000100000000000000FF",
        "000000010000000100000000",
    ]
    assert wal_segments(3, "0/1000028", "0/1000100", 1 << 30) == ["000000030000000000000000"]
