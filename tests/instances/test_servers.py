from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import (
    LocalServer,
    LocalServerError,
    PortInUse,
    free_port,
    local_server,
)
from rdsbackup.instances.servers_os import process_owner
from tests.fixtures.dataset import fingerprint, user_databases, write_load
from tests.fixtures.servers import ServerFactory

ENGINES = ["MariaDB", "PostgreSQL"]


def query(server: LocalServer, sql: str, database: str | None = None) -> Any:
    """Run one statement (committed) and return the first column of the first row."""
    access = server.access()
    if server.engine == "MariaDB":
        with (
            pymysql.connect(
                host=access.host,
                port=access.port,
                user=access.user,
                password=access.password,
                database=database,
                autocommit=True,
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(sql)
            row = cur.fetchone()
            return row[0] if row else None
    with psycopg.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        dbname=database or "postgres",
        autocommit=True,
    ) as pg:
        cur = pg.execute(sql.encode())
        found = cur.fetchone() if cur.description else None
        return found[0] if found else None


@pytest.mark.parametrize("engine", ENGINES)
def test_initialize_start_connect_stop(engine: str, server_factory: ServerFactory) -> None:
    server = server_factory(engine)
    assert not server.is_running() and server.pid() is None
    server.start()
    assert server.is_running()
    assert query(server, "SELECT 1") == 1
    if engine == "MariaDB":
        assert query(server, "SELECT @@log_bin") == 1
        assert query(server, "SELECT @@binlog_format") == "ROW"
        assert "WITH GRANT OPTION" in query(server, "SHOW GRANTS")
    else:
        assert query(server, "SHOW wal_level") == "replica"
        assert query(server, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert query(server, "SHOW server_encoding") == "UTF8"
    access = server.access()
    assert (access.host, access.port, access.user) == ("127.0.0.1", server.port, "rds_admin")
    assert access.data_dir == server.data_dir and access.os_user == server.os_user
    assert server.log_tail(5)
    assert_runs_as_os_user(server)
    server.stop()
    assert not server.is_running() and server.pid() is None
    server.stop()  # idempotent
    with pytest.raises((pymysql.err.OperationalError, psycopg.OperationalError)):
        query(server, "SELECT 1")


def assert_runs_as_os_user(server: LocalServer) -> None:
    pid = server.pid()
    assert pid is not None
    if os.geteuid() == 0:
        assert server.os_user == ("mysql" if server.engine == "MariaDB" else "postgres")
        assert process_owner(pid) == server.os_user
        assert server.data_dir.stat().st_uid != 0
    else:
        assert server.os_user is None
        assert process_owner(pid) == getpass.getuser()
    assert server.data_dir.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_start_is_idempotent_and_restart_keeps_data(
    engine: str, server_factory: ServerFactory
) -> None:
    server = server_factory(engine)
    server.start()
    pid = server.pid()
    server.start()
    assert server.pid() == pid
    database = "postgres"
    if engine == "MariaDB":
        database = "app"
        query(server, "CREATE DATABASE app")
    query(server, "CREATE TABLE kept (id INT PRIMARY KEY, label VARCHAR(20))", database)
    query(server, "INSERT INTO kept VALUES (1, 'still here')", database)
    # another object for the same folder sees the running server and leaves it alone
    twin = local_server(engine, server.base_dir, server.port, "rds_admin", server.admin_password)
    assert twin.pid() == pid
    twin.start()
    assert server.pid() == pid
    twin.stop()
    assert not server.is_running()
    server.start()
    assert server.pid() != pid
    assert query(server, "SELECT label FROM kept WHERE id = 1", database) == "still here"


@pytest.mark.parametrize("engine", ENGINES)
def test_start_on_copied_data_dir(engine: str, server_factory: ServerFactory) -> None:
    source = server_factory(engine)
    source.start()
    load_sample(engine, source.access(), rows=200, databases=("copied",))
    before = fingerprint(engine, source.access())
    source.stop()

    target = server_factory(engine, initialize=False)
    shutil.rmtree(target.data_dir)
    shutil.copytree(source.data_dir, target.data_dir, symlinks=True)
    if os.geteuid() == 0:
        for path in [target.data_dir, *target.data_dir.rglob("*")]:
            os.lchown(path, 0, 0)
    target.start()
    assert fingerprint(engine, target.access()) == before
    assert_runs_as_os_user(target)
    # the copy is independent: writing to it leaves the stopped source untouched
    query(target, "CREATE TABLE only_in_copy (id INT)", "copied")
    source.start()
    assert fingerprint(engine, source.access()) == before


@pytest.mark.parametrize("engine", ENGINES)
def test_without_data_fails_clearly(engine: str, server_factory: ServerFactory) -> None:
    server = server_factory(engine, initialize=False)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", server.version())
    with pytest.raises(LocalServerError, match="holds no data"):
        server.start()


@pytest.mark.parametrize("engine", ENGINES)
def test_misuse_fails_clearly(engine: str, server_factory: ServerFactory) -> None:
    server = server_factory(engine)
    with pytest.raises(LocalServerError, match="not empty"):
        server.initialize()

    wrong = local_server(engine, server.base_dir, server.port, "rds_admin", "not-the-password")
    started = time.monotonic()
    with pytest.raises(LocalServerError, match="refuses rds_admin"):
        wrong.start()
    assert time.monotonic() - started < 30
    assert not server.is_running()

    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", server.port))
        blocker.listen()
        with pytest.raises(PortInUse, match=str(server.port)):
            server.start()
    assert not server.is_running()


@pytest.mark.parametrize("engine", ENGINES)
def test_untraversable_base_dir(engine: str, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    server = local_server(engine, hidden / "srv", free_port(), "rds_admin", "pw")
    if os.geteuid() == 0:
        with pytest.raises(LocalServerError, match=rf"cannot reach .*{hidden}"):
            server.initialize()
    else:  # a server of our own user can always reach our own folders
        server.initialize()
        assert server.data_dir.is_dir()


@pytest.mark.parametrize("engine", ENGINES)
def test_sample_fingerprint_matches_and_detects_changes(
    engine: str, server_factory: ServerFactory, request: pytest.FixtureRequest
) -> None:
    shared: LocalServer = request.getfixturevalue("mariadb" if engine == "MariaDB" else "postgres")
    fresh = server_factory(engine)
    fresh.start()
    load_sample(engine, fresh.access())
    load_sample(engine, fresh.access())  # idempotent
    assert user_databases(engine, fresh.access()) == ["analytics", "shop"]

    expected = fingerprint(engine, shared.access(), ["shop", "analytics"])
    got = fingerprint(engine, fresh.access())
    assert got == expected
    customers = "shop.customers" if engine == "MariaDB" else "shop.public.customers"
    audit = "shop.audit_log" if engine == "MariaDB" else "shop.audit.audit_log"
    assert got[customers][0] == 2000 and got[audit][0] == 500
    assert len({db.split(".")[0] for db in got}) == 2

    query(fresh, "UPDATE customers SET notes = '' WHERE notes IS NULL AND id = 1", "shop")
    changed = fingerprint(engine, fresh.access())
    assert {k for k in got if got[k] != changed[k]} == {customers}
    assert changed[customers][0] == got[customers][0]


@pytest.mark.parametrize("engine", ENGINES)
def test_write_load_writes_until_stopped(engine: str, server_factory: ServerFactory) -> None:
    server = server_factory(engine)
    server.start()
    database = "postgres"
    if engine == "MariaDB":
        database = "busy"
        query(server, "CREATE DATABASE busy")
    stop = threading.Event()
    counts: list[int] = []
    thread = threading.Thread(
        target=lambda: counts.append(write_load(engine, server.access(), database, stop))
    )
    thread.start()
    time.sleep(0.7)
    stop.set()
    thread.join(10)
    assert counts and counts[0] > 20
    rows = query(server, "SELECT COUNT(*) FROM load_writes", database)
    assert 0 < rows <= counts[0]
