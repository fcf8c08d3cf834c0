"""An in-memory engine: a test double shipped with the package, as httpx ships
``MockTransport``.

:class:`MemoryServer` is an in-process stand-in for a database server (databases ->
tables -> rows, a version, a read-only flag, a switch that makes it stop answering)
and :class:`MemoryEngine` drives it through the whole :class:`~rdsbackup.engines.base.Engine`
contract. Its backups are real objects handed to the sink (JSON documents of the
server's data), so a restore from them reproduces the data the server held: service
rules, job behaviour and the protocol can be tested end to end in seconds, without
real database servers.

Sets it writes, by method:

* ``Logical``: ``db/<name>.json`` per database (``extra["db_objects"]`` names them).
* ``Physical``: ``datadir.json`` (full) or ``incremental.json`` (tables changed since the
  parent's ``to_lsn``, and the table layout, so dropped tables go too).
* ``Snapshot``: ``snapshot.json``, the whole server (instance strategy only).

Tests steer a backup with :meth:`MemoryServer.fail_next_backup` (the tool dies half way
through its stream) and :meth:`MemoryServer.block_next_backup` (it stops half way until
the returned :class:`Gate` is released).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar, cast
from urllib.parse import quote

from rdsbackup.engines.base import (
    BackupKind,
    BackupMethod,
    BackupPlan,
    BackupResult,
    BackupStrategy,
    DatabaseInfo,
    Engine,
    EngineError,
    ObjectSink,
    ObjectSource,
    ProgressCallback,
    ServerAccess,
    ServerInfo,
    ServerUnavailable,
    StoredSet,
    ToolFailed,
    UnsupportedPlan,
)
from rdsbackup.manifest import Manifest
from rdsbackup.timeutil import utcnow

Row = list[object]
Tables = dict[str, list[Row]]
DATA_FILE = "memory-server.json"
"""What :meth:`MemoryEngine.restore_physical` writes into a data directory."""
TOOL = "memory-dump"
GATE_TIMEOUT = 60.0
"""A blocked backup that is never released fails after this many seconds."""


class Gate:
    """Holds one backup half way through its stream until :meth:`release`."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait_reached(self, timeout: float = 10.0) -> bool:
        return self.reached.wait(timeout)

    def _hold(self) -> None:
        self.reached.set()
        if not self._released.wait(GATE_TIMEOUT):
            raise ToolFailed(f"{TOOL}: the backup was blocked and never released")


@dataclass(eq=False)
class MemoryServer:
    """A fake database server. Every change bumps ``lsn``; each table remembers the
    ``lsn`` of its last change (what an incremental backup copies)."""

    version: str = "11.4.2-MariaDB-memory"
    databases: dict[str, Tables] = field(default_factory=dict)
    read_only: bool = False
    available: bool = True
    user: str = "admin"
    password: str = field(default="memory-secret", repr=False)
    lsn: int = 1
    changed_at: dict[tuple[str, str], int] = field(default_factory=dict, init=False)
    backups_started: int = field(default=0, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _failure: str | None = field(default=None, init=False, repr=False)
    _gate: Gate | None = field(default=None, init=False, repr=False)

    # -- data -------------------------------------------------------------------------

    def create_database(
        self, name: str, tables: dict[str, Sequence[Sequence[object]]] | None = None
    ) -> None:
        with self._lock:
            self._writable()
            self.databases.setdefault(name, {})
            for table, rows in (tables or {}).items():
                self.put_rows(name, table, rows)

    def drop_database(self, name: str) -> None:
        with self._lock:
            self._writable()
            self.databases.pop(name, None)
            self.lsn += 1

    def put_rows(self, database: str, table: str, rows: Iterable[Sequence[object]]) -> None:
        """Replace ``table``'s rows (creating the table and the database as needed)."""
        with self._lock:
            self._writable()
            self.databases.setdefault(database, {})[table] = [list(r) for r in rows]
            self._touch(database, table)

    def insert(self, database: str, table: str, *rows: Sequence[object]) -> None:
        with self._lock:
            self._writable()
            self.databases.setdefault(database, {}).setdefault(table, []).extend(
                list(r) for r in rows
            )
            self._touch(database, table)

    def drop_table(self, database: str, table: str) -> None:
        with self._lock:
            self._writable()
            self.databases.get(database, {}).pop(table, None)
            self.lsn += 1

    def rows(self, database: str, table: str) -> list[Row]:
        with self._lock:
            return deepcopy(self.databases[database][table])

    def contents(self) -> dict[str, Tables]:
        """A deep copy of every database, for comparing a restore with its source."""
        with self._lock:
            return deepcopy(self.databases)

    def fingerprints(self) -> dict[str, list[object]]:
        """``db.table`` -> ``[rows, checksum]``, as backups record them."""
        with self._lock:
            return _fingerprints(self.databases)

    def data_bytes(self) -> int:
        with self._lock:
            return len(_dump(self.databases))

    # -- steering a backup ---------------------------------------------------------------

    def fail_next_backup(self, reason: str = "lost connection to server during dump") -> None:
        """The next backup's tool dies half way through its first stream."""
        with self._lock:
            self._failure = reason

    def block_next_backup(self) -> Gate:
        """The next backup stops half way through its first stream until released."""
        gate = Gate()
        with self._lock:
            self._gate = gate
        return gate

    def _take_steering(self) -> tuple[str | None, Gate | None]:
        with self._lock:
            steering = self._failure, self._gate
            self._failure, self._gate = None, None
            self.backups_started += 1
            return steering

    # -- internals ------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise ToolFailed("the server is read-only (read_only=ON)")

    def _touch(self, database: str, table: str) -> None:
        self.lsn += 1
        self.changed_at[(database, table)] = self.lsn

    def _load(self, databases: dict[str, Tables], only: Iterable[str] | None = None) -> None:
        """Replace the given databases (all in ``databases`` when ``only`` is None)."""
        with self._lock:
            self._writable()
            for name in databases if only is None else only:
                self.databases[name] = {}
                for table, rows in databases[name].items():
                    self.put_rows(name, table, rows)

    @classmethod
    def load(cls, data_dir: Path) -> MemoryServer:
        """A server started on a data directory :meth:`MemoryEngine.restore_physical` made."""
        state = json.loads((data_dir / DATA_FILE).read_text())
        server = cls(version=state["version"], lsn=state["lsn"])
        server._load(state["databases"])
        return server


class _HalfwayStream:
    """A tool's output: hands out ``data``, and at its half way point fails or waits at
    a gate when the test asked for it."""

    def __init__(self, data: bytes, failure: str | None, gate: Gate | None) -> None:
        self.data = data
        self.pos = 0
        self.half = len(data) // 2
        self.failure = failure
        self.gate = gate

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.half and (self.failure or self.gate):
            self._halfway()
        end = len(self.data) if n < 0 else self.pos + n
        if self.pos < self.half and (self.failure or self.gate):
            end = min(end, self.half)
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk

    def _halfway(self) -> None:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            gate._hold()
        if self.failure is not None:
            raise ToolFailed(f"{TOOL} exited with 2: {self.failure}")


class MemoryEngine(Engine):
    """Drives :class:`MemoryServer` objects, found by the host and port of an access.
    Register one for every family the tests use::

        engine = MemoryEngine()
        access = engine.serve(MemoryServer(databases={"shop": {"orders": [[1, "pen"]]}}))
        EngineRegistry({"MariaDB": engine, "PostgreSQL": engine})
    """

    family: ClassVar[str] = "Memory"

    def __init__(self) -> None:
        self.servers: dict[tuple[str, int], MemoryServer] = {}
        self._next_port = 40000
        self._lock = threading.Lock()

    def serve(self, server: MemoryServer, host: str = "127.0.0.1") -> ServerAccess:
        """Make ``server`` reachable; the access it returns is what an instance registers."""
        with self._lock:
            port = self._next_port
            self._next_port += 1
            self.servers[(host, port)] = server
        return ServerAccess(host, port, server.user, server.password)

    def server(self, access: ServerAccess) -> MemoryServer:
        """The server behind ``access``; raises ServerUnavailable as a client would."""
        where = f"{access.host}:{access.port}"
        server = self.servers.get((access.host, access.port))
        if server is None or not server.available:
            raise _unavailable(where)
        if (access.user, access.password) != (server.user, server.password):
            raise EngineError(f"access denied for user {access.user!r} on {where}")
        return server

    # -- the contract -------------------------------------------------------------------

    def probe(self, access: ServerAccess) -> ServerInfo:
        server = self.server(access)
        with server._lock:
            names = sorted(server.databases)
            return ServerInfo(
                version=server.version,
                databases=tuple(DatabaseInfo(n, "utf8mb4", "utf8mb4_general_ci") for n in names),
                data_bytes=server.data_bytes(),
                read_only=server.read_only,
            )

    def check_plan(self, plan: BackupPlan, access: ServerAccess) -> None:
        if plan.method != BackupMethod.LOGICAL and plan.strategy == BackupStrategy.DB:
            raise UnsupportedPlan("strategy", f"{plan.method.value} sets cover the whole instance.")
        if plan.kind == BackupKind.INCREMENTAL:
            if plan.method != BackupMethod.PHYSICAL:
                raise UnsupportedPlan("kind", "only Physical sets can be incremental")
            if plan.parent is not None and "to_lsn" not in plan.parent.extra:
                raise UnsupportedPlan("kind", "the parent set records no to_lsn")
        self.server(access)  # a plan is checked against a server that answers

    def expected_bytes(self, access: ServerAccess, plan: BackupPlan) -> int:
        server = self.server(access)
        with server._lock:
            return sum(len(data) for _, data in _objects(server, plan))

    def backup(
        self,
        access: ServerAccess,
        plan: BackupPlan,
        sink: ObjectSink,
        on_phase: ProgressCallback,
    ) -> BackupResult:
        server = self.server(access)
        on_phase("Preparing")
        with server._lock:  # the consistent point: what the tool reads
            missing = [d for d in plan.databases if d not in server.databases]
            if missing:
                raise ToolFailed(f"{TOOL}: unknown database {missing[0]!r}")
            objects = _objects(server, plan)
            lsn = server.lsn
            names = _names(server, plan)
            fingerprints = _fingerprints(server.databases, names) if plan.fingerprint else None
        failure, gate = server._take_steering()
        on_phase("Uploading")
        for i, (name, data) in enumerate(objects):
            first = i == 0
            stream = _HalfwayStream(data, failure if first else None, gate if first else None)
            sink.put(name, cast(BinaryIO, stream), inline=True)
        return BackupResult(
            engine_version=server.version,
            databases=names,
            tool_versions={TOOL: server.version},
            consistent_position={"lsn": str(lsn)},
            consistent_time=utcnow(),
            extra=_extra(plan, lsn, names),
            fingerprints=fingerprints,
        )

    def restore_physical(
        self, manifest: Manifest, source: ObjectSource, data_dir: Path, chain: list[StoredSet]
    ) -> None:
        state: dict[str, object] | None = None
        for stored in [*chain, StoredSet(manifest, source)]:
            state = _apply(state, stored)
        assert state is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / DATA_FILE).write_text(json.dumps(state))

    def restore_logical(
        self,
        manifest: Manifest,
        source: ObjectSource,
        target: ServerAccess,
        databases: tuple[str, ...] = (),
    ) -> None:
        if manifest.method != BackupMethod.LOGICAL.value:
            raise ToolFailed(f"a {manifest.method} set cannot be loaded into a running server")
        server = self.server(target)
        recorded: dict[str, str] = json.loads(manifest.extra.get("db_objects", "{}"))
        wanted = databases or tuple(recorded)
        unknown = [d for d in wanted if d not in recorded]
        if unknown:
            raise ToolFailed(f"the set holds no database {unknown[0]!r}")
        loaded: dict[str, Tables] = {}
        for name in wanted:
            stored = _stored_name(manifest, recorded[name])
            with source.open(stored) as f:
                loaded[name] = json.loads(f.read())["tables"]
        server._load(loaded)


# -- objects -------------------------------------------------------------------------------


def object_name(database: str) -> str:
    return f"db/{quote(database, safe='')}.json"


def _names(server: MemoryServer, plan: BackupPlan) -> list[str]:
    return list(plan.databases) if plan.databases else sorted(server.databases)


def _dump(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode()


def _objects(server: MemoryServer, plan: BackupPlan) -> list[tuple[str, bytes]]:
    """The streams a backup of ``plan`` writes, as of now (the caller holds the lock)."""
    names = _names(server, plan)
    if plan.method == BackupMethod.LOGICAL:
        return [
            (object_name(n), _dump({"database": n, "tables": server.databases.get(n, {})}))
            for n in names
        ]
    if plan.kind == BackupKind.INCREMENTAL:
        since = int(plan.parent.extra["to_lsn"]) if plan.parent else 0
        changed: dict[str, Tables] = {}
        for (db, table), at in server.changed_at.items():
            if at > since and table in server.databases.get(db, {}):
                changed.setdefault(db, {})[table] = server.databases[db][table]
        layout = {db: sorted(tables) for db, tables in server.databases.items()}
        body = {"from_lsn": since, "lsn": server.lsn, "layout": layout, "changed": changed}
        return [("incremental.json", _dump(body))]
    name = "snapshot.json" if plan.method == BackupMethod.SNAPSHOT else "datadir.json"
    full = {"version": server.version, "lsn": server.lsn, "databases": server.databases}
    return [(name, _dump(full))]


def _extra(plan: BackupPlan, lsn: int, names: list[str]) -> dict[str, str]:
    if plan.method == BackupMethod.LOGICAL:
        return {"db_objects": json.dumps({n: object_name(n) for n in names}, ensure_ascii=False)}
    from_lsn = plan.parent.extra["to_lsn"] if plan.parent else "0"
    return {"from_lsn": from_lsn, "to_lsn": str(lsn)}


def _stored_name(manifest: Manifest, raw: str) -> str:
    stored = {o.name for o in manifest.objects}
    for name in (raw, raw + ".zst", raw + ".gz"):
        if name in stored:
            return name
    raise ToolFailed(f"object {raw} is not in the set")


def _apply(state: dict[str, object] | None, stored: StoredSet) -> dict[str, object]:
    """The server state after ``stored`` (a full set, or an incremental on ``state``)."""
    manifest = stored.manifest
    if manifest.kind == BackupKind.FULL.value:
        name = "snapshot.json" if manifest.method == BackupMethod.SNAPSHOT.value else "datadir.json"
        with stored.source.open(_stored_name(manifest, name)) as f:
            loaded: dict[str, object] = json.loads(f.read())
        return loaded
    if state is None:
        raise ToolFailed("an incremental set needs its full set first")
    with stored.source.open(_stored_name(manifest, "incremental.json")) as f:
        body = json.loads(f.read())
    before = cast(dict[str, Tables], state["databases"])
    after: dict[str, Tables] = {}
    for db, tables in body["layout"].items():
        after[db] = {
            t: body["changed"].get(db, {}).get(t, before.get(db, {}).get(t, [])) for t in tables
        }
    return {**state, "lsn": body["lsn"], "databases": after}


def _fingerprints(
    databases: dict[str, Tables], names: Iterable[str] | None = None
) -> dict[str, list[object]]:
    result: dict[str, list[object]] = {}
    for db in sorted(databases if names is None else names):
        for table, rows in sorted(databases.get(db, {}).items()):
            checksum = hashlib.sha256(_dump(rows)).hexdigest()[:16]
            result[f"{db}.{table}"] = [len(rows), checksum]
    return result


def _unavailable(where: str) -> EngineError:
    return ServerUnavailable(f"can't connect to server on {where} (the memory server is down)")
