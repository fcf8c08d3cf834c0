"""When a backup policy wants automated backups: pure functions of the policy and a
UTC time (no catalog, no clock of their own), shared by DescribeBackupPolicy's
``PreferredNextBackupTime`` and the scheduler.

A backup day (``PreferredBackupPeriod``) has one full backup in its window
(``PreferredBackupTime``, one hour UTC), at the instance's own minute of the window
(``spread_offset``). ``BackupInterval`` (minutes, 15 at least; ``-1`` = once per window)
adds fulls every that many minutes after it until the end of that UTC day. With
``EnableIncrementDataBackup`` and ``IncBackupInterval`` (minutes, 15 at least), an
incremental falls every that many minutes on every day, on the grid of the window's
minute, where no full falls. So a day holds at most 96 fulls and 96 incrementals.

Each slot has a deadline: it may start until the next slot is due, the window's slot
no later than the window's end, another slot no later than its own interval later.

A leaf module, like ``states``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WINDOW = timedelta(hours=1)
DAY = timedelta(days=1)
MIN_INTERVAL = timedelta(minutes=15)
FULL = "FullBackup"
INCREMENTAL = "IncrementalBackup"


class PolicyTimes(Protocol):
    """What of a policy (``catalog.models.BackupPolicy``) decides the times. A policy may
    also have ``backup_interval``, ``enable_increment_data_backup`` and
    ``inc_backup_interval`` (read when present)."""

    instance_id: str
    preferred_backup_time: str
    preferred_backup_period: str


@dataclass(frozen=True)
class Window:
    start: datetime
    """UTC, naive (as the catalog keeps times)."""
    end: datetime


@dataclass(frozen=True)
class Slot:
    """One automated backup the policy wants."""

    due: datetime
    deadline: datetime
    """It may start until then (exclusive)."""
    kind: str
    """``FullBackup`` or ``IncrementalBackup``."""


def window_start_minutes(preferred_backup_time: str) -> int:
    """Minutes after midnight UTC at which ``HH:mmZ-HH:mmZ`` opens."""
    start = preferred_backup_time.split("-", 1)[0].removesuffix("Z")
    hours, minutes = start.split(":")
    return int(hours) * 60 + int(minutes)


def backup_days(preferred_backup_period: str) -> set[int]:
    """Weekday numbers (Monday = 0) of a ``PreferredBackupPeriod`` list."""
    return {WEEKDAYS.index(d.strip()) for d in preferred_backup_period.split(",") if d.strip()}


def windows(policy: PolicyTimes, after: datetime) -> list[Window]:
    """The policy's backup windows that have not ended at ``after``, over the next 8 days."""
    days = backup_days(policy.preferred_backup_period)
    opens = timedelta(minutes=window_start_minutes(policy.preferred_backup_time))
    midnight = _midnight(after)
    found = []
    for n in range(-1, 8):
        day = midnight + timedelta(days=n)
        start = day + opens
        if day.weekday() in days and start + WINDOW > after:
            found.append(Window(start, start + WINDOW))
    return found


def spread_offset(instance_id: str, span: timedelta = timedelta(minutes=45)) -> timedelta:
    """Where in its window an instance starts: fixed per instance, different instances
    spread over the first ``span`` of the window (the rest is room for a late start)."""
    digest = int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:8], "big")
    return timedelta(minutes=digest % max(1, int(span.total_seconds() // 60)))


def full_interval(policy: PolicyTimes) -> timedelta | None:
    """``BackupInterval`` as a step between fulls on a backup day; None: one per window."""
    value = str(getattr(policy, "backup_interval", "-1")).strip()
    if not value.isdigit() or int(value) <= 0:
        return None
    return max(MIN_INTERVAL, timedelta(minutes=int(value)))


def incremental_interval(policy: PolicyTimes) -> timedelta | None:
    """The step between incrementals; None: no incrementals between fulls."""
    if not getattr(policy, "enable_increment_data_backup", False):
        return None
    minutes = int(getattr(policy, "inc_backup_interval", 0) or 0)
    return max(MIN_INTERVAL, timedelta(minutes=minutes)) if minutes > 0 else None


def slots(policy: PolicyTimes, since: datetime, until: datetime) -> list[Slot]:
    """The slots due after ``since`` and at or before ``until``, oldest first."""
    return [s for s in _deadlined(policy, since, until) if since < s.due <= until]


def next_backup_time(policy: PolicyTimes, after: datetime) -> datetime:
    """The start of the next window's backup at or after ``after``: as Alibaba's
    ``PreferredNextBackupTime``, always inside the window (the extra fulls of
    ``BackupInterval`` and the incrementals are not it)."""
    for window in windows(policy, after):
        due = window.start + spread_offset(policy.instance_id)
        if due >= after:
            return due
    raise ValueError("the policy has no backup day")


def _deadlined(policy: PolicyTimes, since: datetime, until: datetime) -> list[Slot]:
    """Slots of the days around [since, until], each with its deadline."""
    first, last = _midnight(since) - DAY, _midnight(until) + 2 * DAY
    raw: dict[datetime, tuple[str, timedelta]] = {}
    day = first
    while day < last:
        for due, kind, grace in _day_slots(policy, day):
            if due not in raw or kind == FULL:
                raw[due] = (kind, grace)
        day += DAY
    times = sorted(raw)
    out = []
    for i, due in enumerate(times):
        kind, grace = raw[due]
        deadline = due + grace
        if i + 1 < len(times):
            deadline = min(deadline, times[i + 1])
        out.append(Slot(due, deadline, kind))
    return out


def _day_slots(policy: PolicyTimes, day: datetime) -> list[tuple[datetime, str, timedelta]]:
    offset = spread_offset(policy.instance_id)
    anchor = day + timedelta(minutes=window_start_minutes(policy.preferred_backup_time)) + offset
    found: list[tuple[datetime, str, timedelta]] = []
    if day.weekday() in backup_days(policy.preferred_backup_period):
        found.append((anchor, FULL, WINDOW - offset))
        step = full_interval(policy)
        if step is not None:
            due = anchor + step
            while due < day + DAY:
                found.append((due, FULL, step))
                due += step
    inc = incremental_interval(policy)
    if inc is not None:
        fulls = {due for due, _, _ in found}
        due = anchor - ((anchor - day) // inc) * inc
        while due < day + DAY:
            if due not in fulls:
                found.append((due, INCREMENTAL, inc))
            due += inc
    return found


def _midnight(when: datetime) -> datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)
