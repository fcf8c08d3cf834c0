"""The engine contract: how a database engine is probed, backed up and restored.

An engine drives the field's own tools (mariadb-backup, mariadb-dump, pg_basebackup,
pg_dump ...) and hands each raw byte stream a tool produces to an :class:`ObjectSink`.
It knows nothing of HTTP, the catalog, compression or where the bytes are stored:
the sink (built by ``jobs``) compresses, checksums and stores them.

Exception tree::

    EngineError            any failure of an engine operation; ``reason`` is one line
      ServerUnavailable    the server did not answer (probe, connect)
      UnsupportedPlan      this engine cannot do what the plan asks (``what`` says which part)
      ToolFailed           a tool exited non-zero; ``reason`` is its last error line
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, ClassVar, Protocol

from rdsbackup.manifest import Manifest, StoredObject


class BackupMethod(enum.StrEnum):
    PHYSICAL = "Physical"
    LOGICAL = "Logical"
    SNAPSHOT = "Snapshot"


class BackupStrategy(enum.StrEnum):
    INSTANCE = "instance"
    DB = "db"


class BackupKind(enum.StrEnum):
    FULL = "FullBackup"
    INCREMENTAL = "IncrementalBackup"


class EngineError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServerUnavailable(EngineError):
    pass


class UnsupportedPlan(EngineError):
    """``what`` is ``"method"``, ``"kind"`` or ``"strategy"``: the part of the plan refused."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(reason)
        self.what = what


class ToolFailed(EngineError):
    pass


@dataclass(frozen=True)
class ServerAccess:
    """How to reach one database server, and where its files are when it is local."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    data_dir: Path | None = None
    os_user: str | None = None
    """Run tools that read the data directory as this OS user (when the service is root)."""


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    character_set: str = ""
    collation: str = ""


@dataclass(frozen=True)
class ServerInfo:
    version: str
    databases: tuple[DatabaseInfo, ...]
    data_bytes: int
    read_only: bool = False


@dataclass(frozen=True)
class BackupPlan:
    method: BackupMethod
    strategy: BackupStrategy = BackupStrategy.INSTANCE
    kind: BackupKind = BackupKind.FULL
    databases: tuple[str, ...] = ()
    """Empty means every user database of the instance."""
    parent: Manifest | None = None
    """The set an incremental builds on."""
    parallel: int = 2
    fingerprint: bool = False
    """Record per-table row counts and checksums as of the set's consistent point
    (:attr:`BackupResult.fingerprints`), where the engine can prove it read them
    there. Costs one more read of the data."""
    reflink: bool = True
    """Snapshot sets: clone the data directory's files where its file system can."""


@dataclass
class BackupResult:
    engine_version: str
    databases: list[str]
    tool_versions: dict[str, str] = field(default_factory=dict)
    consistent_position: dict[str, str] = field(default_factory=dict)
    """binlog_file/binlog_pos/gtid (MariaDB) or start_lsn/stop_lsn/timeline (PostgreSQL)."""
    consistent_time: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """Engine facts a later backup or restore needs (e.g. from_lsn/to_lsn of a physical set)."""
    fingerprints: dict[str, list[object]] | None = None
    """``db.table`` (PostgreSQL: ``db.schema.table``) -> ``[rows, checksum]`` as of the
    set's consistent point, computed as :class:`~rdsbackup.engines.admin.DatabaseAdmin`
    computes them on a restored server; None when not taken."""


class ObjectSink(Protocol):
    """Where an engine puts the raw streams its tools produce.

    ``put`` reads ``stream`` to EOF and returns what was stored. It is safe to call
    from several threads at once for different names. ``inline`` asks for the stream to
    be compressed in the calling thread: right for a single-threaded producer (one
    dump process) that is slower than one compressor thread, where compression worker
    threads add only copies and hand-offs.
    """

    def put(self, name: str, stream: BinaryIO, *, inline: bool = False) -> StoredObject: ...


class ObjectSource(Protocol):
    """Reads back the objects of a stored set, checksum verified at EOF: ``open`` gives
    the raw bytes; ``open_stored`` gives the bytes as stored and their compression
    (``zstd``, ``gzip`` or ``none``), for an engine that decompresses with a tool (and
    calls ``verify`` when that tool fails, to name a corrupt object as the cause)."""

    def open(self, name: str) -> BinaryIO: ...

    def open_stored(self, name: str) -> tuple[BinaryIO, str]: ...

    def verify(self, name: str) -> None:
        """Read the stored object to its end: raises if its size or checksum differ."""


@dataclass(frozen=True)
class StoredSet:
    """A stored backup set as a restore reads it."""

    manifest: Manifest
    source: ObjectSource


ProgressCallback = Callable[[str], None]
"""Called with a phase name (``Preparing``, ``Uploading`` ...) when the engine enters it."""


class Engine(ABC):
    """One engine family. The tools it drives are named in each subclass's docstring."""

    family: ClassVar[str]

    @abstractmethod
    def probe(self, access: ServerAccess) -> ServerInfo:
        """Connect, read version, user databases and data size. Raises ServerUnavailable."""

    @abstractmethod
    def check_plan(self, plan: BackupPlan, access: ServerAccess) -> None:
        """Raise UnsupportedPlan when this engine cannot run ``plan`` against ``access``."""

    @abstractmethod
    def expected_bytes(self, access: ServerAccess, plan: BackupPlan) -> int:
        """Raw bytes the tools will produce, as well as the server can tell in advance."""

    @abstractmethod
    def backup(
        self,
        access: ServerAccess,
        plan: BackupPlan,
        sink: ObjectSink,
        on_phase: ProgressCallback,
    ) -> BackupResult:
        """Run the tools, feed every stream to ``sink``; raise EngineError on any failure."""

    @abstractmethod
    def restore_physical(
        self, manifest: Manifest, source: ObjectSource, data_dir: Path, chain: list[StoredSet]
    ) -> None:
        """Materialise a startable data directory from a physical (or snapshot) set.

        ``chain`` is the sets this one builds on, oldest (the full set) first; empty for a
        full set. ``data_dir`` is empty and owned by the caller. Stored objects are never
        modified: work on copies.
        """

    @abstractmethod
    def restore_logical(
        self,
        manifest: Manifest,
        source: ObjectSource,
        target: ServerAccess,
        databases: tuple[str, ...] = (),
    ) -> None:
        """Load a logical set (all of it, or only ``databases``) into a running server."""
