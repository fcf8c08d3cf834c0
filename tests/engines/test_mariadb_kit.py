"""Shared helpers of the MariaDB engine tests (this module holds no test).

Consistency is checked by replay: a set restored into a fresh server, plus the source's
binary log from the position the set recorded, must give exactly the source's final
tables. A set that is not the source at one point, or that names the wrong point,
fails this: the replayed row events would miss their rows (or duplicate them), or the
tables would end up different.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pymysql

from rdsbackup.engines.base import (
    BackupMethod,
    BackupPlan,
    BackupResult,
    ServerAccess,
    StoredSet,
)
from rdsbackup.engines.mariadb.engine import MariaDBEngine
from rdsbackup.engines.tools import mysql_option_file
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import Manifest, StoredObject
from rdsbackup.storage.base import StorageError
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader, SetWriter
from tests.fixtures.dataset import fingerprint, write_load
from tests.fixtures.servers import ServerFactory

ENGINE = MariaDBEngine()
SAMPLE = ("analytics", "shop")
PHYSICAL = BackupPlan(BackupMethod.PHYSICAL)
LOGICAL = BackupPlan(BackupMethod.LOGICAL)
SNAPSHOT = BackupPlan(BackupMethod.SNAPSHOT)
TOOLS = ("mariadb-backup", "mbstream", "mariadb-dump", "mariadb")


class Backup:
    """One backup set taken into ``storage`` under ``prefix``."""

    def __init__(self, storage: LocalStorage, prefix: str, plan: BackupPlan) -> None:
        self.storage = storage
        self.prefix = prefix
        self.plan = plan
        self.phases: list[str] = []
        self.writer = SetWriter(storage, prefix)
        self.result: BackupResult | None = None

    def run(self, access: ServerAccess) -> Backup:
        self.result = ENGINE.backup(access, self.plan, self.writer, self.phases.append)
        return self

    @property
    def done(self) -> BackupResult:
        assert self.result is not None
        return self.result

    @property
    def manifest(self) -> Manifest:
        r = self.done
        return Manifest(
            instance_id="i-test",
            engine="MariaDB",
            engine_version=r.engine_version,
            method=self.plan.method,
            kind=self.plan.kind,
            strategy=self.plan.strategy,
            databases=r.databases,
            objects=list(self.writer.objects),
            started_at="",
            finished_at="",
            tool_versions=r.tool_versions,
            consistent_position=r.consistent_position,
            extra=r.extra,
        )

    def reader(self) -> SetReader:
        return SetReader(self.storage, self.prefix, self.manifest)

    def stored(self) -> StoredSet:
        return StoredSet(self.manifest, self.reader())

    def names(self) -> set[str]:
        return {o.name for o in self.writer.objects}

    def raw_bytes(self) -> int:
        return sum(o.raw_size for o in self.writer.objects)


def take(tmp_path: Path, access: ServerAccess, plan: BackupPlan, name: str = "set") -> Backup:
    backup = Backup(LocalStorage(tmp_path / "storage"), name, plan).run(access)
    backup.reader().verify_all()
    return backup


def restore_physical(
    backup: Backup, server_factory: ServerFactory, chain: list[Backup] | None = None
) -> LocalServer:
    target = server_factory("MariaDB", initialize=False)
    stored = [b.stored() for b in chain or []]
    ENGINE.restore_physical(backup.manifest, backup.reader(), target.data_dir, stored)
    target.start()
    return target


def restore_logical(
    backup: Backup, server_factory: ServerFactory, databases: tuple[str, ...] = ()
) -> LocalServer:
    target = server_factory("MariaDB", initialize=True)
    target.start()
    ENGINE.restore_logical(backup.manifest, backup.reader(), target.access(), databases)
    return target


def restore(backup: Backup, server_factory: ServerFactory) -> LocalServer:
    if backup.plan.method == BackupMethod.LOGICAL:
        return restore_logical(backup, server_factory)
    return restore_physical(backup, server_factory)


def source_server(
    server_factory: ServerFactory, rows: int = 200, root: Path | None = None
) -> LocalServer:
    """A private started server with the sample databases (``rows`` per table), made in
    ``root`` if given."""
    server = server_factory("MariaDB", root=root)
    server.start()
    load_sample("MariaDB", server.access(), rows=rows, databases=SAMPLE)
    return server


def query(access: ServerAccess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with (
        pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            charset="utf8mb4",
            autocommit=True,
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(sql, params)
        return list(cur.fetchall())


def user_databases(access: ServerAccess) -> set[str]:
    return {d.name for d in ENGINE.probe(access).databases}


def with_password(access: ServerAccess, password: str) -> ServerAccess:
    return ServerAccess(
        access.host, access.port, access.user, password, access.data_dir, access.os_user
    )


# -- writers ---------------------------------------------------------------------------


def order_load(access: ServerAccess, database: str, stop: threading.Event) -> int:
    """Multi-statement transactions over several tables of a sample database: an order,
    its items, a price change and an audit line, committed together. Returns commits."""
    rng = random.Random(database)
    commits = 0
    conn = pymysql.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        database=database,
        charset="utf8mb4",
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT MIN(id), MAX(id) FROM customers")
        low_c, high_c = cur.fetchone()
        cur.execute("SELECT MIN(id), MAX(id) FROM products")
        low_p, high_p = cur.fetchone()
        while not stop.is_set():
            cur.execute(
                "INSERT INTO orders (customer_id, ordered_at, status, total)"
                " VALUES (%s, NOW(6), 'new', %s)",
                (rng.randint(low_c, high_c), rng.randint(1, 9999) / 100),
            )
            order = cur.lastrowid
            for line in (1, 2):
                cur.execute(
                    "INSERT INTO order_items VALUES (%s, %s, %s, %s, 1.25)",
                    (order, line, rng.randint(low_p, high_p), line),
                )
            cur.execute(
                "UPDATE products SET price = price + 0.01, updated_at = NOW(6) WHERE id = %s",
                (rng.randint(low_p, high_p),),
            )
            cur.execute("INSERT INTO audit_log VALUES (NOW(6), 'load', 'order', %s)", (str(order),))
            conn.commit()
            commits += 1
            time.sleep(0.003)
    return commits


def _wait_for_tables(access: ServerAccess, databases: tuple[str, ...], table: str) -> None:
    """Until the load's table exists everywhere: created once the backup has begun, it
    makes the dump fail with "Table definition has changed" (seen on a loaded machine)."""
    deadline = time.monotonic() + 30
    wanted = len(databases)
    marks = ", ".join(["%s"] * wanted)
    sql = (
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s"
        f" AND table_schema IN ({marks})"
    )
    while query(access, sql, (table, *databases))[0][0] < wanted:
        assert time.monotonic() < deadline, f"{table} not created within 30 s"
        time.sleep(0.02)


@contextmanager
def writing(access: ServerAccess, databases: tuple[str, ...] = SAMPLE) -> Iterator[None]:
    """``write_load`` and ``order_load`` on each of ``databases`` while the block runs
    (and a little before, so that writes are in full swing)."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run(work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as e:
            failures.append(e)

    threads = [
        threading.Thread(target=run, args=(lambda d=d: write_load("MariaDB", access, d, stop),))
        for d in databases
    ] + [
        threading.Thread(target=run, args=(lambda d=d: order_load(access, d, stop),))
        for d in databases
    ]
    for t in threads:
        t.start()
    _wait_for_tables(access, databases, "load_writes")
    time.sleep(0.3)
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures


# -- replay ----------------------------------------------------------------------------


def replay(
    source: LocalServer,
    position: dict[str, str],
    target: ServerAccess,
    database: str | None = None,
) -> None:
    """Apply the source's binary log from ``position`` to ``target``."""
    index = (source.data_dir / "binlog.index").read_text().split()
    files = [source.data_dir / Path(f).name for f in index]
    first = [f.name for f in files].index(position["binlog_file"])
    args = ["mariadb-binlog", f"--start-position={position['binlog_pos']}"]
    if database is not None:
        args.append(f"--database={database}")
    args += [str(f) for f in files[first:]]
    with mysql_option_file(target.host, target.port, target.user, target.password) as options:
        client = ["mariadb", f"--defaults-extra-file={options}", "--binary-mode"]
        log = subprocess.Popen(args, stdout=subprocess.PIPE)
        assert log.stdout is not None
        applied = subprocess.run(client, stdin=log.stdout, capture_output=True, check=False)
        log.stdout.close()
        assert log.wait() == 0
    assert applied.returncode == 0, applied.stderr.decode()


def assert_replays_to_source(
    backup: Backup,
    source: LocalServer,
    target: LocalServer,
    databases: tuple[str, ...] = SAMPLE,
    *,
    only: str | None = None,
) -> None:
    """The restored set plus the binary log since its position equals the source now."""
    position = backup.done.consistent_position
    assert {"binlog_file", "binlog_pos", "gtid"} <= set(position)
    replay(source, position, target.access(), only)
    expected = fingerprint("MariaDB", source.access(), databases)
    assert len(expected) > 5
    assert fingerprint("MariaDB", target.access(), databases) == expected


# -- faults ----------------------------------------------------------------------------


def child_pids(*names: str) -> list[int]:
    """Our own child processes (and their children) running one of ``names``."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if Path(cmd.decode()).name in names and _descends_from(int(stat[1]), me):
            found.append(int(entry.name))
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return False
    return False


def no_tools_left() -> bool:
    deadline = time.monotonic() + 5
    while child_pids(*TOOLS):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class ActingSink:
    """A sink that runs ``act`` once ``after`` raw bytes have arrived in object ``name``
    (any object when None), then goes on reading like any sink, or raises if ``fail``."""

    def __init__(
        self,
        inner: SetWriter,
        act: Callable[[], None],
        after: int,
        *,
        name: str | None = None,
        fail: bool = False,
    ) -> None:
        self.inner, self.act, self.after = inner, act, after
        self.name, self.fail = name, fail
        self.acted = threading.Event()
        self._lock = threading.Lock()

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject:
        if self.name not in (None, name):
            return self.inner.put(name, stream, inline=inline)
        head = stream.read(self.after)
        with self._lock:
            first = not self.acted.is_set()
            self.acted.set()
        if first:
            self.act()
            if self.fail:
                raise StorageError(f"disk full while writing {name}")
        return self.inner.put(name, io.BytesIO(head + stream.read()), inline=inline)


def kill_tool(name: str) -> Callable[[], None]:
    def act() -> None:
        pids = child_pids(name)
        assert pids, f"no {name} running"
        os.kill(pids[0], signal.SIGKILL)

    return act


def kill_server(server: LocalServer) -> Callable[[], None]:
    def act() -> None:
        pid = server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while server.is_running():
            time.sleep(0.01)

    return act


def nothing() -> None:
    return None
