"""Logical backups of PostgreSQL databases, and their restore.

Backup objects:

``globals.sql``
    ``pg_dumpall --globals-only`` (roles, memberships, role settings, tablespaces), in
    UTF-8. Taken for both strategies, because the dumps' objects belong to those roles.
    A backup user that is not a superuser cannot read role passwords: then
    ``--no-role-passwords`` is used and ``extra["role_passwords"]`` says ``"omitted"``.
``db/<name>.dump``
    ``pg_dump --format=custom --compress=0`` of one database (the sink compresses).
    ``<name>`` is the database name with every character outside ``[A-Za-z0-9_.-]``
    percent-encoded (UTF-8 bytes); ``extra["db_objects"]`` maps real names to objects.

The dumps run ``plan.parallel`` at a time, each compressed in its own thread (one
pg_dump, held back by the server's ``COPY``, writes slower than one zstd thread
compresses; zstd worker threads would only add copies: 2.7 s against 3.1 s for pgbench
scale 70). Each pg_dump takes its own snapshot (or, when fingerprints are asked for, the
one a session of ours exported and later fingerprints the database in), so each
database is consistent in itself, as of a moment between ``start_lsn`` and ``stop_lsn``
(the WAL positions read before the first and after the last dump); the databases of one
set are not consistent with each other.

Restore: ``globals.sql`` runs through ``psql`` (``ON_ERROR_STOP``) with the
``CREATE ROLE``/``ALTER ROLE ... WITH`` lines of roles that already exist on the
target removed, so the target's own administrator keeps its password and attributes.
Each dump is then spooled to a private temporary file (its checksum is verified
before its database is touched, at the cost of disk space for one dump) and loaded with
``pg_restore --jobs``: with ``--create`` (owner, encoding, locale, database settings
as dumped) when the database does not exist on the target, into it otherwise (the
``postgres`` database always exists).
"""

from __future__ import annotations

import io
import json
import shutil
import string
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg.conninfo import make_conninfo

from rdsbackup.engines.base import (
    BackupResult,
    EngineError,
    ObjectSink,
    ObjectSource,
    ServerAccess,
)
from rdsbackup.engines.postgres.common import (
    CURRENT_LSN,
    Connection,
    database_fingerprint,
    pg_binary,
    rows,
    scalar,
    server_version,
    session,
    tool_env,
)
from rdsbackup.engines.tools import ToolProcess, feed, tool_version
from rdsbackup.manifest import Manifest

GLOBALS = "globals.sql"
DUMPABLE = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
DUMP_RATIO = 0.75
"""pg_dump's output for a table, as a share of its heap + TOAST size (measured: 0.70 on
the sample data, 0.75 on pgbench; tuple headers and free space are not dumped)."""
_TABLE_DATA = """
SELECT coalesce(sum(pg_relation_size(c.oid)
                    + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
"""
_SCHEMA_BYTES = 16 * 1024
"""A database's dump without its table data (schema, TOC), roughly."""
_SAFE = frozenset(string.ascii_letters + string.digits + "_.-")


def object_name(database: str) -> str:
    """``db/<name>.dump`` with a storage-safe, reversible encoding of the name."""
    encoded = "".join(
        c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in database
    )
    return f"db/{encoded}.dump"


@dataclass(frozen=True)
class _Task:
    name: str
    args: list[str]
    env: dict[str, str]
    fingerprint_db: str | None = None
    """Fingerprint this database in the dump's snapshot, exported to pg_dump."""


class _Runner:
    """Runs tools into the sink a few at a time; the first failure kills the others
    and is the one raised."""

    def __init__(self, sink: ObjectSink, access: ServerAccess) -> None:
        self.sink = sink
        self.access = access
        self.fingerprints: dict[str, list[object]] = {}
        self._lock = threading.Lock()
        self._running: set[ToolProcess] = set()
        self._error: BaseException | None = None

    def run_all(self, tasks: Sequence[_Task], parallel: int) -> None:
        with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="pg-dump") as pool:
            futures = [pool.submit(self._run, task) for task in tasks]
            for future in as_completed(futures):
                if not future.cancelled() and future.exception() is not None:
                    for other in futures:
                        other.cancel()
        if self._error is not None:
            raise self._error

    def _run(self, task: _Task) -> None:
        if self._error is not None:
            return
        try:
            with ExitStack() as stack:
                args, snapshot = task.args, None
                if task.fingerprint_db is not None:
                    snapshot = stack.enter_context(session(self.access, task.fingerprint_db))
                    snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    exported = scalar(snapshot, "SELECT pg_export_snapshot()")
                    args = [*args, f"--snapshot={exported}"]
                self._dump(task.name, args, task.env)
                if snapshot is not None:
                    found = database_fingerprint(snapshot, str(task.fingerprint_db))
                    with self._lock:
                        self.fingerprints.update(found)
        except BaseException as e:
            self._fail(e)
            raise

    def _dump(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with ToolProcess(args, env=env) as tool:
            self._track(tool)
            try:
                self.sink.put(name, tool.stdout, inline=True)
                tool.check()
            finally:
                with self._lock:
                    self._running.discard(tool)

    def _track(self, tool: ToolProcess) -> None:
        with self._lock:
            self._running.add(tool)
            failed = self._error is not None
        if failed:
            tool.kill()

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
            running = list(self._running)
        for tool in running:
            tool.kill()


def logical_backup(
    access: ServerAccess,
    databases: Sequence[str],
    parallel: int,
    sink: ObjectSink,
    *,
    fingerprint: bool = False,
) -> BackupResult:
    """Dump ``databases`` and the globals into ``sink``. With ``fingerprint``, each
    user database (not ``postgres``, which no restore creates) is dumped from a
    snapshot exported by a session that then fingerprints it in that same snapshot."""
    names = list(databases)
    with session(access) as conn:
        version, start_lsn = server_version(conn), str(scalar(conn, CURRENT_LSN))
        superuser = bool(scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
    started = datetime.now(UTC)
    dump, dumpall = pg_binary("pg_dump"), pg_binary("pg_dumpall")
    tasks = [_globals_task(dumpall, access, superuser)]
    tasks += [
        _Task(
            object_name(db),
            _dump_args(dump),
            tool_env(access, db),
            db if fingerprint and db != "postgres" else None,
        )
        for db in names
    ]
    runner = _Runner(sink, access)
    runner.run_all(tasks, parallel)
    with session(access) as conn:
        stop_lsn = str(scalar(conn, CURRENT_LSN))
    extra = {"db_objects": json.dumps({db: object_name(db) for db in names}, ensure_ascii=False)}
    if not superuser:
        extra["role_passwords"] = "omitted"
    return BackupResult(
        engine_version=version,
        databases=names,
        tool_versions={"pg_dump": tool_version(dump), "pg_dumpall": tool_version(dumpall)},
        consistent_position={"start_lsn": start_lsn, "stop_lsn": stop_lsn},
        consistent_time=started,
        extra=extra,
        fingerprints=runner.fingerprints if fingerprint else None,
    )


def expected_dump_bytes(access: ServerAccess, databases: Sequence[str]) -> int:
    """What pg_dump will write for ``databases``: their user tables' heap and TOAST
    (one connection per database) scaled by :data:`DUMP_RATIO`, plus the schema."""
    total = 4096  # globals.sql
    for db in databases:
        with session(access, db) as conn:
            total += int(int(scalar(conn, _TABLE_DATA)) * DUMP_RATIO) + _SCHEMA_BYTES
    return total


def _dump_args(binary: str) -> list[str]:
    return [binary, "--format=custom", "--compress=0", "--no-password"]


def _globals_task(binary: str, access: ServerAccess, superuser: bool) -> _Task:
    args = [binary, "--globals-only", "--no-password"]
    if not superuser:
        args.append("--no-role-passwords")
    env = tool_env(access) | {"PGCLIENTENCODING": "UTF8"}
    return _Task(GLOBALS, args, env)


def logical_restore(
    manifest: Manifest,
    source: ObjectSource,
    target: ServerAccess,
    databases: Sequence[str],
    *,
    jobs: int,
    spool_dir: Path | None,
) -> None:
    wanted = _selected(manifest, databases)
    objects = _objects(manifest)
    with session(target) as conn:
        roles = [r[0] for r in rows(conn, "SELECT quote_ident(rolname) FROM pg_roles")]
        existing = {r[0] for r in rows(conn, "SELECT datname FROM pg_database")}
    if _has_object(manifest, GLOBALS):
        _restore_globals(source, target, roles)
    with tempfile.TemporaryDirectory(prefix="rdsbackup-pg-", dir=spool_dir) as tmp:
        spool = Path(tmp) / "restore.dump"
        for db in wanted:
            _spool(source, objects[db], spool)
            _pg_restore(target, db, spool, create=db not in existing, jobs=jobs)
            spool.unlink()


def _selected(manifest: Manifest, databases: Sequence[str]) -> list[str]:
    missing = [db for db in databases if db not in manifest.databases]
    if missing:
        raise EngineError(f"database(s) not in this backup set: {', '.join(missing)}")
    return list(databases) or list(manifest.databases)


def _objects(manifest: Manifest) -> dict[str, str]:
    recorded: dict[str, str] = json.loads(manifest.extra.get("db_objects", "{}"))
    return {db: recorded.get(db, object_name(db)) for db in manifest.databases}


def _has_object(manifest: Manifest, name: str) -> bool:
    return any(name in (o.name, o.name.removesuffix(".zst")) for o in manifest.objects)


def filter_globals(script: str, existing_roles: Sequence[str]) -> str:
    """Drop the lines that would create, or reset the attributes and password of, a
    role the target already has (``existing_roles`` as ``quote_ident`` spells them,
    which is how pg_dumpall spells them too)."""
    creates = {f"CREATE ROLE {role};" for role in existing_roles}
    alters = tuple(f"ALTER ROLE {role} WITH " for role in existing_roles)
    kept = [
        line
        for line in script.splitlines(keepends=True)
        if line.rstrip("\n") not in creates and not line.startswith(alters)
    ]
    return "".join(kept)


def _restore_globals(source: ObjectSource, target: ServerAccess, roles: Sequence[str]) -> None:
    with source.open(GLOBALS) as f:
        script = f.read().decode()
    args = [pg_binary("psql"), "--no-psqlrc", "--no-password", "--quiet", "--set=ON_ERROR_STOP=1"]
    args.append("--file=-")
    env = tool_env(target)
    with ToolProcess(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env) as tool:
        feed(io.BytesIO(filter_globals(script, roles).encode()), tool)
        tool.check()


def _spool(source: ObjectSource, name: str, path: Path) -> None:
    """Copy the object to ``path``; reading it to the end checks its checksum."""
    with source.open(name) as src, open(path, "xb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _pg_restore(target: ServerAccess, db: str, dump: Path, *, create: bool, jobs: int) -> None:
    args = [pg_binary("pg_restore"), "--exit-on-error", "--no-password", f"--jobs={max(1, jobs)}"]
    if create:
        args += ["--create", "--dbname", make_conninfo(dbname="postgres")]
    else:
        args += ["--dbname", make_conninfo(dbname=db)]
    args.append(str(dump))
    with ToolProcess(args, stdout=subprocess.DEVNULL, env=tool_env(target)) as tool:
        tool.check()


def user_databases(conn: Connection) -> list[str]:
    return [r[0] for r in rows(conn, DUMPABLE + " AND datname <> 'postgres' ORDER BY datname")]
