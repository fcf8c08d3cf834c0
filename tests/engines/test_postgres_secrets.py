"""The PostgreSQL tools get the admin password in a 0600 password file: never in
their environment (``/proc/<pid>/environ``) nor their argv, and the file is gone once
the backup is over. Looked at from the sink, while each tool streams into it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rdsbackup.engines.base import BackupMethod, BackupPlan, ObjectSink
from rdsbackup.engines.postgres.engine import PostgresEngine
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import StoredObject
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetWriter
from tests.engines.test_postgres import connect
from tests.fixtures.servers import ADMIN_PASSWORD, ServerFactory

TOOLS = {"pg_basebackup", "pg_dump", "pg_dumpall"}


@dataclass(frozen=True)
class Seen:
    tool: str
    argv: bytes
    environ: dict[bytes, bytes]
    passfile_mode: int
    folder_mode: int

    @property
    def passfile(self) -> Path:
        return Path(self.environ[b"PGPASSFILE"].decode())


def _running_tools() -> list[tuple[int, str]]:
    """The live (not zombie) PostgreSQL tools this test process started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == os.getpid() and name in TOOLS and state != "Z":
            found.append((int(entry.name), name))
    return found


def _look(pid: int, name: str) -> Seen | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        environ = dict(e.partition(b"=")[::2] for e in raw.split(b"\0") if e)
        passfile = Path(environ[b"PGPASSFILE"].decode())
        modes = stat.S_IMODE(passfile.stat().st_mode), stat.S_IMODE(passfile.parent.stat().st_mode)
    except (OSError, KeyError):
        return None  # exited meanwhile
    return Seen(name, argv, environ, *modes)


class WatchingSink:
    """Stores into ``writer``; before each stream is read, looks at the tools writing."""

    def __init__(self, writer: ObjectSink) -> None:
        self.writer = writer
        self.seen: list[Seen] = []

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        for pid, tool in _running_tools():
            seen = _look(pid, tool)
            if seen is not None:
                self.seen.append(seen)
        return self.writer.put(name, stream, inline=inline)


def _backup(tmp_path: Path, server: LocalServer, method: BackupMethod) -> list[Seen]:
    sink = WatchingSink(SetWriter(LocalStorage(tmp_path / "storage"), "set"))
    PostgresEngine().backup(server.access(), BackupPlan(method), sink, lambda _: None)
    return sink.seen


def _assert_private(seen: list[Seen]) -> None:
    password = ADMIN_PASSWORD.encode()
    for s in seen:
        assert b"PGPASSWORD" not in s.environ, s.tool
        assert not any(password in value for value in s.environ.values()), s.tool
        assert password not in s.argv, s.tool
        assert (s.passfile_mode, s.folder_mode) == (0o600, 0o700), s.tool
        assert not s.passfile.parent.exists(), f"{s.tool}'s passfile left behind"


def test_pg_basebackup_reads_the_password_from_a_file_gone_afterwards(
    tmp_path: Path, postgres: LocalServer
) -> None:
    seen = _backup(tmp_path, postgres, BackupMethod.PHYSICAL)
    assert "pg_basebackup" in {s.tool for s in seen}
    _assert_private(seen)


def test_pg_dump_reads_the_password_from_a_file_gone_afterwards(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("PostgreSQL")
    server.start()
    with connect(server.access()) as conn:
        conn.execute("CREATE DATABASE big")
    with connect(server.access(), "big") as conn:
        # ~20 MiB of dump: more than the pipe holds, so pg_dump is still writing
        conn.execute("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 4e5) g")
    seen = _backup(tmp_path, server, BackupMethod.LOGICAL)
    assert "pg_dump" in {s.tool for s in seen}
    _assert_private(seen)
