"""The log-backup contract: streaming an engine's change log (MariaDB binlogs,
PostgreSQL WAL) and replaying it onto a restored base set to a point in time.

An engine's :class:`LogStreamer` runs the field's streaming tool (``mariadb-binlog
--read-from-remote-server --raw --stop-never``, ``pg_receivewal --slot``) into a spool
folder owned by the caller and reports the files that are *complete*: never the one the
tool is still writing. ``jobs`` (the log shipper) stores each complete file like a set's
objects (compressed, checksummed, encrypted when the policy says so), records it in the
catalog with its time range and positions, removes it from the spool, restarts the
streamer when it dies (resuming after the last stored file) and reports any gap.

A point-in-time restore is two steps around the first start of the restored server:
:meth:`LogEngine.prepare_recovery` on the data directory (PostgreSQL writes its
``recovery_target_time`` configuration; MariaDB has nothing to do) and
:meth:`LogEngine.finish_recovery` once it runs (MariaDB pipes ``mariadb-binlog
--start-position --stop-datetime`` into it; PostgreSQL waits for the promotion).

Target semantics, both engines: the restored server holds every transaction committed
**before** ``RecoveryTarget.time`` and none committed at or after it (MariaDB's event
times have whole seconds, so a whole-second target is exact; PostgreSQL uses
``recovery_target_inclusive = off``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rdsbackup.engines.base import ServerAccess


@dataclass(frozen=True)
class LogFile:
    """One complete log file in the spool folder, as the streamer found it."""

    name: str
    """The server's own name: ``binlog.000012``; ``000000010000000000000003`` (WAL
    segment); ``00000002.history`` (a PostgreSQL timeline history file)."""
    path: Path
    sequence: int
    """Order on its timeline: the binlog's number; the segment's number
    (``log * segments_per_log + seg``). Consecutive files differ by one: a jump is a gap."""
    timeline: int = 1
    """PostgreSQL's timeline; always 1 for MariaDB."""
    start_position: str = ""
    """Where the file begins: ``binlog.000012:4`` / an LSN ``0/3000000``."""
    end_position: str = ""
    """Where it ends (exclusive): ``binlog.000012:88411`` / ``0/4000000``."""
    first_time: datetime | None = None
    """Commit time (UTC) of the first transaction in it; None if it holds none."""
    last_time: datetime | None = None
    """Commit time (UTC) of the last transaction in it; None if it holds none."""
    extra: dict[str, str] = field(default_factory=dict)
    """Engine facts, e.g. ``gtid_list`` of a binlog (its GTID_LIST event). Two keys
    prove continuity beyond the numbers: :data:`LINEAGE_START` (the server's log state
    the file starts from) and :data:`LINEAGE_END` (the state it leaves); a file whose
    start differs from the stored predecessor's end does not continue it."""


LINEAGE_START = "lineage_start"
LINEAGE_END = "lineage_end"


class LogStreamer(ABC):
    """A running streaming tool. Not thread-safe: one caller polls it."""

    @abstractmethod
    def start(self) -> None:
        """Start the tool (raises EngineError when it cannot connect)."""

    @abstractmethod
    def completed(self) -> list[LogFile]:
        """Files complete since the last call, in order. The caller stores each and
        then deletes its ``path``; the streamer never reports a file twice."""

    @abstractmethod
    def exited(self) -> str | None:
        """None while the tool runs; else why it ended (its last error line)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the tool; files not reported as complete stay in the spool."""


@dataclass(frozen=True)
class RecoveryTarget:
    time: datetime
    """UTC, whole seconds: replay transactions committed before this instant."""
    log_dir: Path
    """A folder holding the needed log files, decompressed and verified, by their names."""
    logs: tuple[LogFile, ...]
    """Those files in replay order (the first holds the base set's position)."""
    base_position: dict[str, str]
    """The base set's ``consistent_position`` (binlog_file/binlog_pos/gtid or LSNs and
    timeline)."""


class LogEngine(ABC):
    """What an engine family implements for log backups and point-in-time restore."""

    @abstractmethod
    def check_log_source(self, access: ServerAccess) -> None:
        """Raise UnsupportedPlan("logs", why) when the server cannot stream its log
        (binary log off, wal_level minimal, no replication privilege ...)."""

    @abstractmethod
    def log_streamer(
        self, access: ServerAccess, spool: Path, resume_after: LogFile | None
    ) -> LogStreamer:
        """A streamer writing into ``spool``; it starts with the file after
        ``resume_after`` (or at the server's oldest/current log when None)."""

    def release_log_source(self, access: ServerAccess, spool: Path) -> None:
        """Log backups were switched off: give up what the stream held on the server
        (PostgreSQL's replication slot, which would keep WAL forever)."""
        return None

    @abstractmethod
    def base_log(self, position: Mapping[str, str]) -> tuple[int, str] | None:
        """The (timeline, name) of the log file holding a base set's consistent position
        (its ``consistent_position``); None when the set records none (it cannot be the
        base of a point-in-time restore)."""

    @abstractmethod
    def switch_log(self, access: ServerAccess) -> None:
        """Close the current log file so it becomes complete (``FLUSH BINARY LOGS``,
        ``pg_switch_wal()``): bounds the loss window of an idle server."""

    @abstractmethod
    def prepare_recovery(self, data_dir: Path, target: RecoveryTarget) -> None:
        """Before the restored server's first start."""

    @abstractmethod
    def finish_recovery(self, access: ServerAccess, target: RecoveryTarget) -> None:
        """Once the restored server runs; returns when it holds exactly the target."""
