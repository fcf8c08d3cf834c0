"""The benchmark's own database servers and their data, under ``bench/.data``.

Each engine gets one :class:`~rdsbackup.instances.servers.LocalServer` (never the
machine's system servers), started on a free port for this run and stopped at its end.
The data is made once and reused while its parameters do not change:

* MariaDB: ``sysbench oltp_read_write --tables=N --table-size=M prepare`` into ``sbtest``;
* PostgreSQL: ``pgbench -i -s S`` (server-side generation) into ``bench``.

``dataset.json`` in each server folder records what was made, so a later run only
starts the server. Sizes are measured on every run: the InnoDB files of ``sbtest``
on disk, ``pg_database_size('bench')``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from rdsbackup.instances.servers import LocalServer, PortInUse, free_port, local_server

DATA_ROOT = Path(__file__).resolve().parent / ".data"
ADMIN_USER = "bench_admin"
MARIADB_DB = "sbtest"
POSTGRES_DB = "bench"
SYSBENCH_BYTES_PER_ROW = 250
"""On-disk bytes of one sysbench row (InnoDB, secondary index included), measured here."""
PGBENCH_SCALE_PER_GIB = 70
"""``pgbench -i -s 70`` makes about 1 GiB."""
GIB = 1 << 30


@dataclass
class BenchServer:
    """A started server, the database holding the data, and the data's size."""

    engine: str
    server: LocalServer
    database: str
    data_bytes: int
    description: str

    @property
    def data_gib(self) -> float:
        return self.data_bytes / GIB

    def pid(self) -> int | None:
        return self.server.pid()


def _log(message: str) -> None:
    print(f"[data] {message}", flush=True)


def admin_password() -> str:
    """The admin password of both bench servers, made once (alphanumeric, so that it
    can be given to sysbench and mydumper on their command lines)."""
    path = DATA_ROOT / "credentials.json"
    if path.exists():
        return str(json.loads(path.read_text())["password"])
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": ADMIN_USER, "password": password}, f)
    return password


def _prepare_root() -> None:
    """``bench/.data`` must be traversable by the ``mysql``/``postgres`` users."""
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.chmod(0o711)


def start_server(engine: str) -> LocalServer:
    """Start (initialising on first use) the bench server of ``engine`` on a free port."""
    _prepare_root()
    base = DATA_ROOT / engine.lower()
    password = admin_password()
    for _ in range(3):
        server = local_server(engine, base, free_port(), ADMIN_USER, password)
        if not (server.data_dir.is_dir() and any(server.data_dir.iterdir())):
            _log(f"initialising the {engine} server in {base}")
            server.initialize()
        elif server.is_running():  # left by an earlier run, on a port we do not know
            server.stop()
        try:
            server.start()
            return server
        except PortInUse:
            continue
    raise RuntimeError(f"no free port for the {engine} bench server")


def _recorded(base: Path) -> dict[str, Any]:
    path = base / "dataset.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _record(base: Path, params: dict[str, Any]) -> None:
    (base / "dataset.json").write_text(json.dumps(params, sort_keys=True) + "\n")


# -- MariaDB -----------------------------------------------------------------------------------


def mariadb_connect(server: LocalServer, database: str | None = None) -> Any:
    return pymysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=server.admin_user,
        password=server.admin_password,
        database=database,
        autocommit=True,
        read_timeout=3600,
    )


def mariadb_sql(server: LocalServer, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements``; the rows of the last one."""
    conn = mariadb_connect(server)
    try:
        rows: list[tuple[Any, ...]] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
        return rows
    finally:
        conn.close()


def mariadb_table_size(size_gib: float, tables: int) -> int:
    return max(1000, int(size_gib * GIB / tables / SYSBENCH_BYTES_PER_ROW))


def _sysbench_args(server: LocalServer, tables: int, table_size: int, threads: int) -> list[str]:
    return [
        "sysbench",
        "oltp_read_write",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={server.port}",
        f"--mysql-user={server.admin_user}",
        f"--mysql-password={server.admin_password}",
        f"--mysql-db={MARIADB_DB}",
        f"--tables={tables}",
        f"--table-size={table_size}",
        f"--threads={threads}",
    ]


def _mariadb_tables_present(server: LocalServer, tables: int, table_size: int) -> bool:
    rows = mariadb_sql(
        server,
        "SELECT COUNT(*) FROM information_schema.tables"
        f" WHERE table_schema = '{MARIADB_DB}' AND table_name LIKE 'sbtest%'",
    )
    if not rows or int(rows[0][0]) != tables:
        return False
    last = mariadb_sql(server, f"SELECT MAX(id) FROM {MARIADB_DB}.sbtest{tables}")
    return bool(last) and last[0][0] is not None and int(last[0][0]) >= table_size


def mariadb_data_bytes(server: LocalServer) -> int:
    """On-disk bytes of the sysbench tables (their ``.ibd`` files)."""
    folder = server.data_dir / MARIADB_DB
    return sum(p.stat().st_size for p in folder.glob("*.ibd"))


def purge_binlogs(server: LocalServer) -> None:
    """Data generation and the incremental path's updates fill the binary log; the
    backups do not copy it, but it fills the disk."""
    mariadb_sql(server, "FLUSH BINARY LOGS", "PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 SECOND")


def ensure_mariadb(
    size_gib: float, tables: int, table_size: int | None, threads: int
) -> BenchServer:
    server = start_server("MariaDB")
    rows = table_size or mariadb_table_size(size_gib, tables)
    params = {"tool": "sysbench oltp_read_write", "tables": tables, "table_size": rows}
    if _recorded(server.base_dir) != params or not _mariadb_tables_present(server, tables, rows):
        _log(f"MariaDB: sysbench prepare, {tables} tables x {rows} rows (takes minutes)")
        started = time.monotonic()
        mariadb_sql(
            server,
            f"DROP DATABASE IF EXISTS {MARIADB_DB}",
            f"CREATE DATABASE {MARIADB_DB}",
        )
        _run([*_sysbench_args(server, tables, rows, threads), "prepare"], "sysbench prepare")
        _record(server.base_dir, params)
        _log(f"MariaDB: data made in {time.monotonic() - started:.0f} s")
    purge_binlogs(server)
    size = mariadb_data_bytes(server)
    return BenchServer(
        "MariaDB",
        server,
        MARIADB_DB,
        size,
        f"sysbench oltp_read_write --tables={tables} --table-size={rows}",
    )


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_env(server: LocalServer, database: str = "postgres") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST="127.0.0.1",
        PGPORT=str(server.port),
        PGUSER=server.admin_user,
        PGPASSWORD=server.admin_password,
        PGDATABASE=database,
    )
    return env


def pg_sql(server: LocalServer, statement: str, database: str = "postgres") -> list[Any]:
    with psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user=server.admin_user,
        password=server.admin_password,
        dbname=database,
        autocommit=True,
    ) as conn:
        cur = conn.execute(statement)
        return list(cur.fetchall()) if cur.description else []


def pg_tool(name: str) -> str:
    from rdsbackup.engines.postgres.common import pg_binary

    return pg_binary(name)


def pg_data_bytes(server: LocalServer) -> int:
    return int(pg_sql(server, f"SELECT pg_database_size('{POSTGRES_DB}')")[0][0])


def _pg_tables_present(server: LocalServer, scale: int) -> bool:
    if not pg_sql(server, f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DB}'"):
        return False
    try:
        rows = pg_sql(server, "SELECT count(*) FROM pgbench_branches", POSTGRES_DB)
    except psycopg.Error:
        return False
    return int(rows[0][0]) == scale


def ensure_postgres(size_gib: float, scale: int | None) -> BenchServer:
    server = start_server("PostgreSQL")
    s = scale or max(1, round(size_gib * PGBENCH_SCALE_PER_GIB))
    params = {"tool": "pgbench -i -I dtGvp", "scale": s}
    if _recorded(server.base_dir) != params or not _pg_tables_present(server, s):
        _log(f"PostgreSQL: pgbench -i -s {s} (takes a minute or two)")
        started = time.monotonic()
        pg_sql(server, f"DROP DATABASE IF EXISTS {POSTGRES_DB} WITH (FORCE)")
        pg_sql(server, f"CREATE DATABASE {POSTGRES_DB}")
        _run(
            [pg_tool("pgbench"), "-i", "-I", "dtGvp", "-s", str(s), "--quiet", POSTGRES_DB],
            "pgbench -i",
            env=pg_env(server, POSTGRES_DB),
        )
        pg_sql(server, "CHECKPOINT")
        _record(server.base_dir, params)
        _log(f"PostgreSQL: data made in {time.monotonic() - started:.0f} s")
    return BenchServer(
        "PostgreSQL", server, POSTGRES_DB, pg_data_bytes(server), f"pgbench -i -s {s}"
    )


# -- shared ------------------------------------------------------------------------------------


def _run(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout)[-2000:]
        raise RuntimeError(f"{what} failed ({out.returncode}): {tail}")


def _files(folder: Path) -> Iterator[Path]:
    for root, _, names in os.walk(folder):
        for name in names:
            yield Path(root) / name


def warm_page_cache(folder: Path) -> int:
    """Read every file under ``folder`` once so the timed runs all start warm (the
    machine's RAM holds the whole data set; dropping caches needs privileges we do not
    play games with). Returns the bytes read."""
    total = 0
    buf = bytearray(1 << 20)
    for path in _files(folder):
        try:
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    total += n
        except OSError:
            continue
    return total


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
