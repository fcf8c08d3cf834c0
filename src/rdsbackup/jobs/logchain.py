"""Which base set and which stored log files restore an instance to a point in time, and
the window of times that can be restored to at all.

A time T can be restored to when a successful base set is consistent at or before T,
the log file holding its position is stored, and every log file from there to the first
one whose last commit is at or after T is stored too, with consecutive sequences and
no recorded gap between them (``log_gaps``: a file that did not continue its
predecessor breaks the chain though its number follows). A set whose position names a
file that was refused after the stored one of that name is not a base: its position
may be in the refused file.

The window therefore begins at the oldest base set whose logs run unbroken to the
newest stored file, and ends at the newest stored commit: a commit after it may sit in
a file not yet complete, so no later time is promised.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from rdsbackup.catalog.models import BackupSet, LogFileRecord, LogGap
from rdsbackup.jobs.logstore import COMPLETED, HISTORY
from rdsbackup.states import BackupStatus, LogGapKind

BaseLog = Callable[[Mapping[str, str]], "tuple[int, str] | None"]
"""An engine's ``LogEngine.base_log``."""


class NoRecovery(Exception):
    """The time cannot be restored to; the message says why (and the window)."""


@dataclass(frozen=True)
class Window:
    begin: datetime
    end: datetime


@dataclass(frozen=True)
class RecoveryPlan:
    backup_id: int
    logs: list[LogFileRecord]
    """History files first, then the files from the base set's to the one covering T."""


def usable_sets(s: Session, instance_id: str, at_or_before: datetime | None) -> list[BackupSet]:
    query = select(BackupSet).where(
        BackupSet.instance_id == instance_id,
        BackupSet.status == BackupStatus.SUCCESS,
        BackupSet.is_avail.is_(True),
        BackupSet.deleting_at.is_(None),
        BackupSet.consistent_time.is_not(None),
    )
    if at_or_before is not None:
        query = query.where(BackupSet.consistent_time <= at_or_before)
    return list(s.scalars(query.order_by(BackupSet.consistent_time.desc(), BackupSet.id.desc())))


def _stored(instance_id: str) -> tuple[ColumnElement[bool], ...]:
    return (
        LogFileRecord.instance_id == instance_id,
        LogFileRecord.status == COMPLETED,
        LogFileRecord.deleting_at.is_(None),
    )


def durable_end(s: Session, instance_id: str) -> datetime | None:
    """The newest commit whose log is stored."""
    return s.scalar(
        select(func.max(LogFileRecord.last_time)).where(
            LogFileRecord.instance_id == instance_id,
            LogFileRecord.status == COMPLETED,
            LogFileRecord.deleting_at.is_(None),
        )
    )


def base_of(backup: BackupSet, base_log: BaseLog) -> tuple[int, str] | None:
    return base_log(json.loads(backup.consistent_position or "{}"))


def unbroken_from(s: Session, instance_id: str) -> tuple[int, int] | None:
    """(timeline, sequence) of the oldest file from which the stored logs of the newest
    timeline run unbroken to its newest file."""
    timeline = s.scalar(
        select(func.max(LogFileRecord.timeline)).where(
            LogFileRecord.instance_id == instance_id,
            LogFileRecord.kind != HISTORY,
            LogFileRecord.status == COMPLETED,
            LogFileRecord.deleting_at.is_(None),
        )
    )
    if timeline is None:
        return None
    files = s.execute(
        select(LogFileRecord.sequence, LogFileRecord.name)
        .where(
            LogFileRecord.instance_id == instance_id,
            LogFileRecord.timeline == timeline,
            LogFileRecord.kind != HISTORY,
            LogFileRecord.status == COMPLETED,
            LogFileRecord.deleting_at.is_(None),
        )
        .order_by(LogFileRecord.sequence.desc())
    )
    gap_after = _gap_after(s, instance_id, timeline)
    oldest: int | None = None
    for seq, name in files:
        if oldest is not None and (seq != oldest - 1 or name in gap_after):
            break
        oldest = seq
    return None if oldest is None else (timeline, oldest)


def window(s: Session, instance_id: str, base_log: BaseLog) -> Window | None:
    end = durable_end(s, instance_id)
    unbroken = unbroken_from(s, instance_id)
    if end is None or unbroken is None:
        return None
    timeline, first = unbroken
    begin: datetime | None = None
    for backup in usable_sets(s, instance_id, end):
        base = base_of(backup, base_log)
        if base is None or base[0] != timeline:
            continue
        record = _base_record(s, instance_id, backup, base)
        if not isinstance(record, str) and record.sequence >= first:
            assert backup.consistent_time is not None
            begin = backup.consistent_time  # sets come newest first: keep the oldest
    return None if begin is None else Window(begin, end)


def plan(
    s: Session, instance_id: str, when: datetime, base_log: BaseLog, backup_id: int | None = None
) -> RecoveryPlan:
    """The newest base set at or before ``when`` whose logs reach it unbroken (only the
    set ``backup_id``, when given)."""
    end = durable_end(s, instance_id)
    if end is None:
        raise NoRecovery("no log backup of this instance is stored")
    if when > end:
        raise NoRecovery(f"the newest stored log reaches {end:%Y-%m-%dT%H:%M:%SZ}")
    reasons: list[str] = []
    for backup in usable_sets(s, instance_id, when):
        base = base_of(backup, base_log)
        if base is None or backup_id not in (None, backup.id):
            continue
        logs = _chain(s, instance_id, backup, base, when)
        if isinstance(logs, str):
            reasons.append(f"backup set {backup.id}: {logs}")
            continue
        history = list(
            s.scalars(
                select(LogFileRecord)
                .where(
                    *_stored(instance_id),
                    LogFileRecord.kind == HISTORY,
                    LogFileRecord.timeline <= base[0],
                )
                .order_by(LogFileRecord.timeline)
            )
        )
        return RecoveryPlan(backup.id, [*history, *logs])
    if not reasons:
        which = f"backup set {backup_id} is not" if backup_id else "no available backup set is"
        raise NoRecovery(f"{which} a base set taken before that time")
    raise NoRecovery("; ".join(reasons[:3]))


def _chain(
    s: Session, instance_id: str, backup: BackupSet, base: tuple[int, str], when: datetime
) -> list[LogFileRecord] | str:
    timeline = base[0]
    first = _base_record(s, instance_id, backup, base)
    if isinstance(first, str):
        return first
    chain: list[LogFileRecord] = []
    records = s.scalars(
        select(LogFileRecord)
        .where(
            *_stored(instance_id),
            LogFileRecord.timeline == timeline,
            LogFileRecord.kind != HISTORY,
            LogFileRecord.sequence >= first.sequence,
        )
        .order_by(LogFileRecord.sequence)
    )
    gap_after = _gap_after(s, instance_id, timeline)
    for record in records:
        if chain and (record.sequence != chain[-1].sequence + 1 or chain[-1].name in gap_after):
            return f"the logs have a gap after {chain[-1].name}"
        chain.append(record)
        if record.last_time is not None and record.last_time >= when:
            return chain
    return "the stored logs do not reach that time"


def _gap_after(s: Session, instance_id: str, timeline: int) -> set[str]:
    """Names of the stored files a recorded gap follows: no chain runs on from them."""
    return set(
        s.scalars(
            select(LogGap.after_file).where(
                LogGap.instance_id == instance_id, LogGap.timeline == timeline
            )
        )
    )


def _base_record(
    s: Session, instance_id: str, backup: BackupSet, base: tuple[int, str]
) -> LogFileRecord | str:
    """The stored file holding the set's position, or why there is none. When a file
    of that name was refused (other content) and the set is newer than the stored one,
    the set's position may name the refused file: the stored one cannot be trusted."""
    timeline, name = base
    record = s.scalar(
        select(LogFileRecord).where(
            *_stored(instance_id), LogFileRecord.timeline == timeline, LogFileRecord.name == name
        )
    )
    if record is None:
        return f"its log file {name} is not stored"
    refused = s.scalar(
        select(func.count(LogGap.id)).where(
            LogGap.instance_id == instance_id,
            LogGap.timeline == timeline,
            LogGap.kind == LogGapKind.REFUSED,
            LogGap.before_file == name,
        )
    )
    assert backup.consistent_time is not None
    if refused and backup.consistent_time > record.stored_at:
        return (
            f"the server wrote another {name} after the stored one (its log history "
            "restarted); this set's position may be in that file, which was refused"
        )
    return record
