"""Stored log files: every complete binlog or WAL segment the streamer reports goes to
storage like a set's objects (compressed, sha256 of the stored bytes, encrypted when the
instance's sets are) under ``<instance>/logs/<timeline>/<name><suffix>``, and into
``log_files`` with its time range and positions.

A file whose name is already stored is a duplicate when its content is the same (a
restarted streamer sends it again) and is refused when it is not, as pgBackRest and
WAL-G refuse to overwrite an archived segment. A file that does not follow the last
stored one of its timeline records a gap (``states.LogGapKind``): a jump in numbers
(``Missing``), or a successor whose lineage (``engines.logs.LINEAGE_START``: a binlog's
GTID state, a segment's system identifier) is not where the stored one ended
(``Diverged``, as after ``RESET MASTER``). No restore crosses a gap.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    Instance,
    LogFileRecord,
    LogGap,
    encrypts_backups,
    policy_for,
)
from rdsbackup.engines.families import POSTGRES, family_of
from rdsbackup.engines.logs import LINEAGE_END, LINEAGE_START, LogFile
from rdsbackup.manifest import StoredObject
from rdsbackup.states import LogGapKind
from rdsbackup.storage.base import Storage
from rdsbackup.storage.keys import Keyring, SetKey
from rdsbackup.storage.streams import SetWriter, open_object
from rdsbackup.timeutil import utcnow

HISTORY = "history"
FETCH_THREADS = 4
COMPLETED = "Completed"


class LogRefused(Exception):
    """The file cannot be stored (same name, other content; no key to encrypt it)."""


@dataclass(frozen=True)
class LogOptions:
    compression: str = "zstd"
    compression_level: int = 1
    encrypt_default: bool = False
    keyring: Keyring | None = None


@dataclass(frozen=True)
class StoreResult:
    stored: bool
    """False: the file was a duplicate of a stored one (nothing written)."""
    gap: LogGap | None = None
    """The gap this file revealed (recorded), if any."""


class _HashingReader:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        data = self.inner.read(n)
        self.sha.update(data)
        return data


def log_kind(engine: str, name: str) -> str:
    if name.endswith(".history"):
        return HISTORY
    return "wal" if family_of(engine) is POSTGRES else "binlog"


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def as_log_file(record: LogFileRecord, path: Path) -> LogFile:
    return LogFile(
        name=record.name,
        path=path,
        sequence=record.sequence,
        timeline=record.timeline,
        start_position=record.start_position,
        end_position=record.end_position,
        first_time=record.first_time,
        last_time=record.last_time,
        extra=json.loads(record.extra or "{}"),
    )


def _gap(instance_id: str, previous: LogFileRecord, file: LogFile, now: datetime) -> LogGap | None:
    """The gap between the newest stored file of the timeline and ``file``, if any: a
    jump in numbers, or a successor that does not continue it (its lineage)."""
    if file.sequence > previous.sequence + 1:
        kind = LogGapKind.MISSING
        reason = (
            f"{file.sequence - previous.sequence - 1} log file(s) between {previous.name} "
            f"and {file.name} were never stored (the server no longer had them when "
            "streaming resumed)"
        )
    else:
        before = json.loads(previous.extra or "{}").get(LINEAGE_END)
        after = file.extra.get(LINEAGE_START)
        if before is None or after is None or before == after:
            return None
        kind = LogGapKind.DIVERGED
        reason = (
            f"{file.name} does not continue {previous.name}: it starts from {after!r}, "
            f"the stored file ends at {before!r} (the server's log history restarted)"
        )
    return LogGap(
        instance_id=instance_id,
        timeline=file.timeline,
        after_file=previous.name,
        before_file=file.name,
        from_time=previous.last_time or previous.stored_at,
        to_time=_naive(file.first_time) or now,
        reason=reason,
        kind=kind,
        detected_at=now,
    )


class LogStore:
    def __init__(self, catalog: Catalog, storage: Storage, options: LogOptions) -> None:
        self.catalog = catalog
        self.storage = storage
        self.options = options

    def last(self, instance_id: str) -> LogFile | None:
        """The newest stored log file (history files aside): where a streamer resumes."""
        with self.catalog.read() as s:
            record = s.scalar(
                select(LogFileRecord)
                .where(LogFileRecord.instance_id == instance_id, LogFileRecord.kind != HISTORY)
                .order_by(LogFileRecord.timeline.desc(), LogFileRecord.sequence.desc())
                .limit(1)
            )
            return None if record is None else as_log_file(record, Path(record.name))

    def store(self, instance_id: str, file: LogFile) -> StoreResult:
        with self.catalog.read() as s:
            instance = s.get_one(Instance, instance_id)
            engine, account_id = instance.engine, instance.account_id
            same = s.scalar(
                select(LogFileRecord).where(
                    LogFileRecord.instance_id == instance_id,
                    LogFileRecord.timeline == file.timeline,
                    LogFileRecord.name == file.name,
                )
            )
            previous = s.scalar(
                select(LogFileRecord)
                .where(
                    LogFileRecord.instance_id == instance_id,
                    LogFileRecord.timeline == file.timeline,
                    LogFileRecord.kind != HISTORY,
                )
                .order_by(LogFileRecord.sequence.desc())
                .limit(1)
            )
            set_key = self._new_key(s, instance_id)
        if same is not None:
            if same.sha256 != sha256_of(file.path):
                raise LogRefused(
                    f"log file {file.name} arrived again with other content than the stored "
                    "one; the stored file is kept"
                )
            return StoreResult(stored=False)
        kind = log_kind(engine, file.name)
        if kind != HISTORY and previous is not None and file.sequence <= previous.sequence:
            raise LogRefused(
                f"log file {file.name} (sequence {file.sequence}) is older than the newest "
                f"stored one {previous.name}"
            )
        prefix = f"{instance_id}/logs/{file.timeline:08X}"
        writer = SetWriter(
            self.storage,
            prefix,
            compression=self.options.compression,
            level=self.options.compression_level,
            threads=0,
            encryption=set_key,
        )
        with file.path.open("rb") as f:
            hashing = _HashingReader(cast(BinaryIO, f))
            obj = writer.put(file.name, cast(BinaryIO, hashing), inline=True)
        now = utcnow()
        gap = None
        if kind != HISTORY and previous is not None:
            gap = _gap(instance_id, previous, file, now)
        with self.catalog.write() as s:
            s.add(
                LogFileRecord(
                    instance_id=instance_id,
                    account_id=account_id,
                    kind=kind,
                    name=file.name,
                    timeline=file.timeline,
                    sequence=file.sequence,
                    start_position=file.start_position,
                    end_position=file.end_position,
                    first_time=_naive(file.first_time),
                    last_time=_naive(file.last_time),
                    extra=json.dumps(file.extra, sort_keys=True),
                    status=COMPLETED,
                    object_key=f"{writer.prefix}{obj.name}",
                    size=obj.size,
                    raw_size=obj.raw_size,
                    sha256=hashing.sha.hexdigest(),
                    stored_sha256=obj.sha256,
                    compression=obj.compression,
                    encryption_key_id=set_key.key_id if set_key else "",
                    wrapped_data_key=set_key.wrapped_key if set_key else "",
                    stored_at=now,
                )
            )
            if gap is not None:
                s.add(gap)
        return StoreResult(stored=True, gap=gap)

    def fetch(self, records: list[LogFileRecord], into: Path) -> list[LogFile]:
        """Decompress (and decrypt) each file into ``into`` under its own name, verified
        against its recorded checksums (LogRefused names a damaged one). Files are
        fetched side by side: each is a zstd stream and a hash, which run outside the
        GIL, and a restore waits for all of them."""
        into.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="log-fetch") as pool:
            return list(pool.map(lambda record: self._fetch_one(record, into), records))

    def _fetch_one(self, record: LogFileRecord, into: Path) -> LogFile:
        path = into / record.name
        obj = StoredObject(
            record.object_key.rsplit("/", 1)[-1],
            record.size,
            record.raw_size,
            record.stored_sha256,
            record.compression,
        )
        sha = hashlib.sha256()
        with (
            open_object(self.storage, record.object_key, obj, self._key_of(record)) as src,
            path.open("wb") as out,
        ):
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
        if sha.hexdigest() != record.sha256:
            raise LogRefused(f"log file {record.name} does not match its recorded checksum")
        return as_log_file(record, path)

    def _new_key(self, s: Session, instance_id: str) -> SetKey | None:
        policy = policy_for(s, instance_id)
        if not encrypts_backups(policy, self.options.encrypt_default):
            return None
        keyring = self.options.keyring
        if keyring is None:
            raise LogRefused("backup encryption is on but no encryption keys are configured")
        key_id = policy.encryption_key_id
        if key_id and not keyring.has(key_id):
            raise LogRefused(f"the backup encryption key {key_id!r} is not configured")
        return keyring.new_set_key(key_id or None)

    def _key_of(self, record: LogFileRecord) -> SetKey | None:
        if not record.encryption_key_id:
            return None
        if self.options.keyring is None:
            raise LogRefused(f"log file {record.name} is encrypted and no keys are configured")
        key_id, wrapped = record.encryption_key_id, record.wrapped_data_key
        return SetKey(key_id, wrapped, self.options.keyring.unwrap(key_id, wrapped))


def _naive(value: datetime | None) -> datetime | None:
    """The catalog keeps naive UTC datetimes."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
