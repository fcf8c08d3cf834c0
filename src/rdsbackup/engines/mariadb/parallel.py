"""Logical MariaDB sets: parallel ``mariadb-dump --single-transaction`` workers sharing
one consistent point, loaded back with one ``mariadb`` client per object.

Backup:

1. a lock session runs ``BACKUP STAGE START, FLUSH, BLOCK_DDL``: no DDL runs and no
   non-transactional (MyISAM, Aria) table is written from now on; InnoDB commits go
   on. It lists the tables (the listing cannot go stale) and one
   ``mariadb-dump --no-data`` writes ``schema.sql``: CREATE DATABASE IF NOT EXISTS and
   every table's and sequence's CREATE statement;
2. ``BACKUP STAGE BLOCK_COMMIT``: no transaction commits from now on either. Running
   statements are not waited for: FLUSH TABLES WITH READ LOCK (mariadb-dump
   --master-data, mydumper) waits for every running write statement and holds all new
   writes meanwhile (measured: a 3 s UPDATE stalled every commit for 2.7 s; see
   ``bench/mariadb_logical_choice.py``);
3. the tables that have rows to dump are dealt to ``parallel`` workers, biggest first,
   each to the least loaded one. Each worker is one ``mariadb-dump --single-transaction
   --no-create-info --databases ...`` process, told by ``ignore-table`` lines in its
   option file to skip every table that is not its own. Once each has opened its
   snapshot (its ``--verbose`` log goes past "Starting transaction"), all the snapshots
   see the same committed transactions; the binlog position and GTID are read, and
   ``BACKUP STAGE END`` lets commits and DDL go on;
4. one more ``mariadb-dump --no-data`` writes ``objects.sql``: the views, routines and
   events (no table: they are all ignored).

The workers read rows with ``--default-character-set=binary``: the server sends every
value as stored, unconverted, and mariadb-dump escapes it byte by byte instead of
character by character (half the client CPU; it is what mydumper does). The rows load
back byte for byte under the ``SET NAMES binary`` the objects start with. Statements
that carry text in a character set of their own (CREATE TABLE with a latin1 default,
views, routines) must not go through a binary connection (the literal would be stored
as its UTF-8 bytes), so they are in ``schema.sql`` and ``objects.sql``, written with
utf8mb4. Triggers stay with their table's rows: mariadb-dump sets each trigger's own
character sets around it.

Every stream is checked: it must end with mariadb-dump's completion line and hold
exactly the tables expected of it, so a table created or dropped during the dump (DDL
is not blocked once the snapshots are open, as with any ``--single-transaction`` dump)
fails the backup instead of giving a set that would not restore to one point. A table
altered once the snapshots are open either had its rows read already (``schema.sql``
and the rows both show it as it was at the consistent point: DDL was blocked from the
schema's dump until then) or fails its worker's read (InnoDB: "Table definition has
changed").

Objects: ``schema.sql``, ``data-<k>.sql`` (k = 1..workers: per table its rows and its
triggers, in ``-- Current Database`` sections) and ``objects.sql`` (a section per
database: CREATE DATABASE IF NOT EXISTS, views, routines, events). A restore loads
``schema.sql``, then the data objects side by side, one client each, then
``objects.sql`` (views need their tables); a restore of chosen databases keeps only
their sections. Sets written before ``schema.sql`` existed carry each table's CREATE in
its data object and load the same way.

The ``mysql`` schema (accounts, grants) is never dumped, as before: restoring it as
tables would replace the target's own accounts. An instance with no user database
therefore gives a set of one ``objects.sql`` that says so: it restores as a no-op,
and its binlog position still marks the consistent point.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

from rdsbackup.engines.base import EngineError, ObjectSink, ObjectSource, ServerAccess, ToolFailed
from rdsbackup.engines.mariadb.logical import DumpScanner, dump_binary, load_object
from rdsbackup.engines.mariadb.physical import check_tool
from rdsbackup.engines.mariadb.sql import SYSTEM_SCHEMAS, SnapshotSession, StageLock
from rdsbackup.engines.tools import ToolProcess, last_error_line, private_file, tool_version

DATA_PREFIX = "data-"
SCHEMA = "schema.sql"
NO_DATABASES = b"-- rdsbackup: no user database at the consistent point\n"
OBJECTS = "objects.sql"
NO_ROWS_ENGINES = frozenset({"mrg_myisam", "mrg_isam", "federated"})
"""Engines whose rows mariadb-dump never dumps (the rows live elsewhere)."""
SNAPSHOT_WAIT = 60.0
"""Seconds the workers may take to open their snapshots while commits are blocked."""
DUMP_RATIO = 0.85
"""Dump bytes per byte of InnoDB ``data_length`` (measured: sysbench tables 0.88, the
sample tables 0.4 to 0.95: their pages are emptier)."""
_BEFORE_SNAPSHOT = ("-- Connecting to", "-- Starting transaction")
_TELLING = ("error", "lost", "gone away", "denied", "can't", "couldn't")


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    size: int
    table_type: str = "BASE TABLE"
    """information_schema's: ``BASE TABLE``, ``VIEW``, ``SEQUENCE``, ``SYSTEM VERSIONED``."""
    engine: str = "InnoDB"

    @property
    def view(self) -> bool:
        return self.table_type == "VIEW"

    @property
    def base_table(self) -> bool:
        """What a fingerprint covers: not a view, sequence or system-versioned table."""
        return self.table_type == "BASE TABLE"

    @property
    def has_rows(self) -> bool:
        """mariadb-dump dumps rows for it (a sequence's state is in its structure)."""
        return self.table_type in ("BASE TABLE", "SYSTEM VERSIONED") and (
            self.engine.lower() not in NO_ROWS_ENGINES
        )

    @property
    def key(self) -> tuple[str, str]:
        return self.database, self.name


@dataclass
class ParallelOutcome:
    tool_versions: dict[str, str]
    position: dict[str, str]
    consistent_time: datetime
    databases: list[str]
    extra: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, list[object]] | None = None


def expected_bytes(data_lengths: list[int]) -> int:
    """The dump's size from each table's ``data_length``, plus its CREATE statements."""
    return sum(int(DUMP_RATIO * n) + 2048 for n in data_lengths)


def deal(tables: list[Table], workers: int) -> list[list[Table]]:
    """Tables with rows dealt to at most ``workers`` groups, biggest first, each to
    the group with the fewest bytes so far (longest processing time first)."""
    data = sorted((t for t in tables if t.has_rows), key=lambda t: (-t.size, t.key))
    groups: list[list[Table]] = [[] for _ in range(max(1, min(workers, len(data))))]
    loads = [0] * len(groups)
    for table in data:
        k = loads.index(min(loads))
        groups[k].append(table)
        loads[k] += table.size + 1
    return [g for g in groups if g]


class Crew:
    """Tools running side by side, each drained or fed by its own thread. The first
    failure (a tool's, or the sink's) kills every tool; ``join`` raises it."""

    def __init__(self) -> None:
        self.tools: list[ToolProcess] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, tool: ToolProcess, work: Callable[[], None]) -> None:
        self.tools.append(tool)
        thread = threading.Thread(target=self._run, args=(work,), name=f"crew-{tool.name}")
        self._threads.append(thread)
        thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as e:
            with self._lock:
                self.errors.append(e)
            self.kill()

    def kill(self) -> None:
        for tool in list(self.tools):
            tool.kill()

    def check(self) -> None:
        """Raise the first failure that says why (a tool the crew killed, or one that
        died without a word, says nothing), else the first."""
        if self.errors:
            telling = [e for e in self.errors if not isinstance(e, ToolFailed) or _tells(e)]
            raise (telling or self.errors)[0]

    def join(self) -> None:
        for thread in self._threads:
            thread.join()
        for tool in self.tools:
            tool.__exit__(None, None, None)
        self.check()

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.kill()
            for thread in self._threads:
                thread.join()
            for tool in self.tools:
                tool.__exit__(None, None, None)


def _tells(e: ToolFailed) -> bool:
    """A tool's failure that gives a reason: not killed by the crew, naming an error."""
    head, _, said = e.reason.partition(": ")
    return not head.endswith("exited with -9") and any(w in said.lower() for w in _TELLING)


def backup_parallel(
    access: ServerAccess,
    databases: tuple[str, ...] | None,
    workers: int,
    sink: ObjectSink,
    *,
    fingerprint: bool = False,
) -> ParallelOutcome:
    """Dump ``databases`` (None: every user database) with ``workers`` workers; with
    ``fingerprint``, also count and checksum every dumped table in the same snapshot,
    once the dump is written."""
    binary = dump_binary()
    with ExitStack() as stack:
        lock = stack.enter_context(StageLock(access))
        crew = stack.enter_context(Crew())
        snapshot = stack.enter_context(SnapshotSession(access)) if fingerprint else None
        lock.block_ddl()
        tables, names = _list_tables(lock, databases)
        if names:
            options = stack.enter_context(_options(access, [t for t in tables if t.view]))
            structures = {t.key for t in tables if not t.view}
            _dump_schema(sink, _dump_args(binary, options, SCHEMA_DUMP, names), structures)
        lock.block_commit()
        if snapshot is not None:
            snapshot.open()
        groups = deal(tables, workers)
        for k, group in enumerate(groups, 1):
            options = stack.enter_context(_options(access, _others(tables, group)))
            args = _dump_args(binary, options, ROWS_DUMP, sorted({t.database for t in group}))
            _start_dump(crew, sink, f"{DATA_PREFIX}{k}.sql", args, {t.key for t in group})
        _wait_snapshots(crew)
        position = lock.position()
        lock.end()
        assert lock.blocked_at is not None
        if names:
            options = stack.enter_context(_options(access, [t for t in tables if not t.view]))
            args = _dump_args(binary, options, OBJECTS_DUMP, names)
            _start_dump(crew, sink, OBJECTS, args, set())
        else:  # mariadb-dump refuses an empty --databases list
            sink.put(OBJECTS, io.BytesIO(NO_DATABASES), inline=True)
        crew.join()
        fingerprints = (
            snapshot.fingerprints([t.key for t in tables if t.base_table]) if snapshot else None
        )
    return ParallelOutcome(
        tool_versions={"mariadb-dump": tool_version(binary)},
        position=position,
        consistent_time=lock.blocked_at,
        databases=names,
        extra={
            "workers": str(len(groups)),
            "lock_ms": str(round(lock.commit_seconds * 1000)),
            "ddl_lock_ms": str(round(lock.ddl_seconds * 1000)),
        },
        fingerprints=fingerprints,
    )


def _list_tables(
    lock: StageLock, databases: tuple[str, ...] | None
) -> tuple[list[Table], list[str]]:
    schemata = [str(r[0]) for r in lock.run("SELECT schema_name FROM information_schema.schemata")]
    wanted = set(databases) if databases is not None else set(schemata) - set(SYSTEM_SCHEMAS)
    names = sorted(d for d in schemata if d in wanted)
    missing = sorted(set(databases or ()) - set(names))
    if missing:
        raise EngineError(f"no such database: {', '.join(missing)}")
    if not names:
        return [], []
    rows = lock.run(
        "SELECT table_schema, table_name, table_type, COALESCE(engine, ''),"
        " COALESCE(data_length, 0) FROM information_schema.tables WHERE table_schema IN ("
        + ", ".join(_sql_string(n) for n in names)
        + ")"
    )
    tables = [Table(str(s), str(n), int(z), str(t), str(e)) for s, n, t, e, z in rows]
    return tables, names


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _others(tables: list[Table], group: list[Table]) -> list[Table]:
    """Every table or view of the group's databases that is not the group's."""
    mine = {t.key for t in group}
    dbs = {t.database for t in group}
    return [t for t in tables if t.database in dbs and t.key not in mine]


@contextmanager
def _options(access: ServerAccess, ignored: list[Table]) -> Iterator[Path]:
    """A private option file: the [client] login and the tables mariadb-dump skips."""

    def q(v: str) -> str:
        if "\n" in v or "\r" in v:
            raise EngineError(f"cannot dump a table whose name holds a line break: {v!r}")
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "[client]",
        f"host={q(access.host)}",
        f"port={access.port}",
        f"user={q(access.user)}",
        f"password={q(access.password)}",
        "protocol=TCP",
        "[mysqldump]",
        *(f"ignore-table={q(f'{t.database}.{t.name}')}" for t in ignored),
    ]
    with private_file("\n".join(lines) + "\n", suffix=".cnf") as path:
        yield path


SCHEMA_DUMP = (
    "--default-character-set=utf8mb4",
    "--no-data",
    "--skip-triggers",
    "--skip-routines",
    "--skip-events",
)
ROWS_DUMP = (
    "--default-character-set=binary",
    "--no-create-info",
    "--no-create-db",
    "--skip-add-locks",
    "--skip-routines",
    "--skip-events",
    "--triggers",
)
"""Rows as stored (binary: see the module's docstring). No LOCK TABLES around the rows:
loaded side by side, a session holding one on a parent table fails ("Table 'child' was
not locked with LOCK TABLES") as soon as another session creates a child table with a
foreign key to it."""
OBJECTS_DUMP = (
    "--default-character-set=utf8mb4",
    "--no-data",
    "--skip-triggers",
    "--routines",
    "--events",
)


def _dump_args(
    binary: str, options: Path, what: tuple[str, ...], databases: list[str]
) -> list[str]:
    return [
        binary,
        f"--defaults-extra-file={options}",
        "--verbose",
        "--single-transaction",
        "--quick",
        "--max-allowed-packet=1G",
        *what,
        "--databases",
        "--",
        *databases,
    ]


def _dump_schema(sink: ObjectSink, args: list[str], tables: set[tuple[str, str]]) -> None:
    """``schema.sql``, written in this thread: DDL stays blocked until it is complete."""
    with ToolProcess(args) as tool:
        _write_dump(sink, SCHEMA, tool, tables)


def _start_dump(
    crew: Crew, sink: ObjectSink, name: str, args: list[str], tables: set[tuple[str, str]]
) -> None:
    tool = ToolProcess(args)
    crew.start(tool, lambda: _write_dump(sink, name, tool, tables))


def _write_dump(
    sink: ObjectSink, name: str, tool: ToolProcess, tables: set[tuple[str, str]]
) -> None:
    """Store the tool's dump as ``name``; it must succeed and hold exactly ``tables``."""
    scanner = DumpScanner(tool.stdout)
    sink.put(name, cast(BinaryIO, scanner))
    check_tool(tool)
    _check_stream(name, tool, scanner, tables)


def _check_stream(
    name: str, tool: ToolProcess, scanner: DumpScanner, tables: set[tuple[str, str]]
) -> None:
    if not scanner.completed:
        raise ToolFailed(
            f"mariadb-dump did not report success: {last_error_line(list(tool.lines))}"
        )
    seen = set(scanner.tables)
    extra, lost = sorted(seen - tables), sorted(tables - seen)
    if extra or lost:
        what = f"{'.'.join(extra[0])} appeared" if extra else f"{'.'.join(lost[0])} vanished"
        raise EngineError(
            f"{name}: table {what} while the backup ran (DDL during a logical backup);"
            " the set would not restore to one point: run the backup again"
        )


def _wait_snapshots(crew: Crew) -> None:
    """Until every worker has opened its consistent snapshot."""
    deadline = time.monotonic() + SNAPSHOT_WAIT
    waiting = list(crew.tools)
    while waiting:
        crew.check()
        waiting = [t for t in waiting if not _snapshot_open(t)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise EngineError(
                f"mariadb-dump did not open its snapshot within {SNAPSHOT_WAIT:.0f} s:"
                f" {last_error_line(list(waiting[0].lines))}"
            )
        time.sleep(0.002)


def _snapshot_open(tool: ToolProcess) -> bool:
    """mariadb-dump --verbose logs "Starting transaction" before START TRANSACTION WITH
    CONSISTENT SNAPSHOT and its next line after it."""
    code = tool.proc.poll()
    if code is not None and code != 0:
        tool.wait()  # its last stderr lines (the reason) may still be in the pipe
        raise ToolFailed(f"{tool.name} exited with {code}: {last_error_line(list(tool.lines))}")
    if code == 0:
        return True
    lines = list(tool.lines)
    return any(ln.startswith("-- ") and not ln.startswith(_BEFORE_SNAPSHOT) for ln in lines)


# -- restore -------------------------------------------------------------------------


def restore_parallel(
    names: list[str], source: ObjectSource, target: ServerAccess, databases: tuple[str, ...]
) -> None:
    """Load ``schema.sql`` (when the set has one), the data objects side by side, then
    ``objects.sql``."""
    data = [n for n in names if n.startswith(DATA_PREFIX)]
    if OBJECTS not in names:
        raise EngineError(f"the set has no {OBJECTS}")
    if SCHEMA in names:
        load_object(source, SCHEMA, target, databases)
    errors: list[BaseException] = []

    def load(name: str) -> None:
        try:
            load_object(source, name, target, databases)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=load, args=(n,), name=f"load-{n}") for n in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    missing = load_object(source, OBJECTS, target, databases)
    if missing:
        raise EngineError(f"{OBJECTS} has no section for {', '.join(sorted(missing))}")
