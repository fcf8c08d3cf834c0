"""PostgreSQL backups that fail part-way, for every method: the server is killed, the
tool is killed, the storage fails. Each must raise with the reason, leave no tool
running and, for a Snapshot, leave the server out of backup mode with no slot left."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from rdsbackup.engines.base import BackupMethod, BackupPlan, EngineError, ToolFailed
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import StoredObject
from rdsbackup.storage.base import StorageError
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetWriter
from tests.engines.test_postgres import ENGINE, PG, connect, query
from tests.fixtures.servers import ServerFactory

TOOLS = {
    BackupMethod.PHYSICAL: "pg_basebackup",
    BackupMethod.LOGICAL: "pg_dump",
    BackupMethod.SNAPSHOT: "tar",
}
METHODS = list(TOOLS)
_LEFT_BEHIND = "aborting backup due to backend exiting before pg_backup_stop was called"


def child_pids(name: str) -> list[int]:
    """Our own child processes running ``name``."""
    me, found = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if stat[1] == me and Path(cmd.decode()).name == name:
            found.append(int(entry.name))
    return found


def _copy(inner: SetWriter, name: str, head: bytes, stream: BinaryIO) -> StoredObject:
    return inner.put(name, io.BytesIO(head + stream.read()))


class KillingSink:
    """Kills the running ``tool`` once ``after`` bytes of a stream have arrived, then
    reads the stream to its end like any sink would."""

    def __init__(self, inner: SetWriter, tool: str, after: int) -> None:
        self.inner, self.tool, self.after = inner, tool, after
        self.killed: list[int] = []

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        head = stream.read(self.after)
        if len(head) == self.after:
            for pid in child_pids(self.tool):
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
        return _copy(self.inner, name, head, stream)


def kill_server(pid: int) -> None:
    """SIGKILL the postmaster and every process it started (each backend leads its own
    process group, so killing the postmaster's group would leave them running)."""
    os.kill(pid, signal.SIGSTOP)  # no new backends from now on
    for entry in Path("/proc").iterdir():
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if parent == str(pid):
            os.kill(int(entry.name), signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


class ServerKillingSink:
    """Kills the whole server (postmaster and backends) once ``after`` bytes of a
    database stream have arrived."""

    def __init__(self, inner: SetWriter, server: LocalServer, after: int) -> None:
        self.inner, self.server, self.after = inner, server, after
        self.killed = False

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        head = b"" if name == "globals.sql" else stream.read(self.after)
        pid = self.server.pid()
        if len(head) == self.after and pid is not None:
            kill_server(pid)
            self.killed = True
        return _copy(self.inner, name, head, stream)


class BrokenSink:
    """A sink whose storage fails after a little of a stream was read."""

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        stream.read(4096)
        if name == "globals.sql":
            return StoredObject(name, 0, 0, "")
        raise StorageError(f"disk full while writing {name}")


def log_size(server: LocalServer) -> int:
    return server.log_file.stat().st_size


def assert_out_of_backup(server: LocalServer, log_from: int) -> None:
    """No slot left, the engine's session gone, and pg_backup_stop called by the engine
    itself (the server warns when a session ends in backup mode)."""
    access = server.access()
    assert (
        query(  # the log streams' own slots (rdsbackup_*) are there by design
            access,
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name NOT LIKE 'rdsbackup%'",
        )
        == []
    )
    # the log streams' walsenders (pg_receivewal) are there by design too
    sessions = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'rdsbackup' AND backend_type = 'client backend'"
    )
    deadline = time.monotonic() + 10
    while query(access, sessions) != [(0,)]:
        assert time.monotonic() < deadline, (
            "the engine's session is still open",
            query(
                access,
                "SELECT pid, state, backend_type, query FROM pg_stat_activity"
                " WHERE application_name = 'rdsbackup'",
            ),
        )
        time.sleep(0.05)
    with server.log_file.open("rb") as f:
        f.seek(log_from)
        assert _LEFT_BEHIND not in f.read().decode("utf-8", "replace")


def test_a_session_left_in_backup_mode_shows_in_the_log(postgres: LocalServer) -> None:
    """What ``assert_out_of_backup`` looks for, when nobody calls pg_backup_stop."""
    before = log_size(postgres)
    with connect(postgres.access()) as conn:
        conn.execute(b"SELECT pg_backup_start('left behind', true)")
    deadline = time.monotonic() + 10
    while _LEFT_BEHIND not in postgres.log_file.read_bytes()[before:].decode():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def bulky(server_factory: ServerFactory) -> LocalServer:
    """A server whose dump is larger than a tool's 1 MiB pipe: the tool is still running
    (blocked on the pipe) when the sink kills it."""
    server = server_factory(PG)
    server.start()
    with connect(server.access()) as conn:
        conn.execute(
            b"CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g + 1)::text)"
            b" || md5((g + 2)::text) AS filler FROM generate_series(1, 60000) g"
        )
    return server


@pytest.mark.parametrize("method", METHODS)
def test_killed_tool_is_a_failure(
    method: BackupMethod, tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    tool = TOOLS[method]
    after = 64 * 1024 if method == BackupMethod.LOGICAL else 1 << 20
    source = bulky(server_factory) if method == BackupMethod.LOGICAL else postgres
    sink = KillingSink(SetWriter(LocalStorage(tmp_path), "set"), tool, after)
    before = log_size(postgres)
    with pytest.raises(ToolFailed, match=f"^{tool} exited with -9"):
        ENGINE.backup(source.access(), BackupPlan(method), sink, lambda _: None)
    assert sink.killed
    assert child_pids(tool) == []
    if method == BackupMethod.SNAPSHOT:
        assert_out_of_backup(postgres, before)


@pytest.mark.parametrize("method", METHODS)
def test_storage_failure_stops_the_tools(method: BackupMethod, postgres: LocalServer) -> None:
    before = log_size(postgres)
    with pytest.raises(StorageError, match="disk full"):
        ENGINE.backup(postgres.access(), BackupPlan(method), BrokenSink(), lambda _: None)
    assert child_pids(TOOLS[method]) == []
    if method == BackupMethod.SNAPSHOT:
        assert_out_of_backup(postgres, before)


_GONE = "server closed the connection unexpectedly"
_SERVER_GONE = {
    BackupMethod.PHYSICAL: f"^pg_basebackup exited with 1: .*{_GONE}",
    # The dump of the roles (pg_dumpall) runs beside the databases' pg_dump: either may see it.
    BackupMethod.LOGICAL: f"^pg_dump(all)? exited with 1: .*{_GONE}",
    BackupMethod.SNAPSHOT: _GONE,
}


@pytest.mark.parametrize("method", METHODS)
def test_server_killed_mid_backup(
    method: BackupMethod, tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory(PG)
    server.start()
    with connect(server.access()) as conn:
        conn.execute(b"CREATE TABLE big (id int, v text)")
        conn.execute(
            b"INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 150000) g"
        )
    sink = ServerKillingSink(SetWriter(LocalStorage(tmp_path), "set"), server, 256 * 1024)
    with pytest.raises(EngineError, match=_SERVER_GONE[method]):
        ENGINE.backup(server.access(), BackupPlan(method), sink, lambda _: None)
    assert sink.killed
    assert child_pids(TOOLS[method]) == []
