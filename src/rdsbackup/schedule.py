"""When a backup policy wants automated backups: pure functions of the policy and a
UTC time (no catalog, no clock of their own), shared by DescribeBackupPolicy's
``PreferredNextBackupTime`` and the scheduler.

A leaf module, like ``states``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WINDOW = timedelta(hours=1)


class PolicyTimes(Protocol):
    """What of a policy (``catalog.models.BackupPolicy``) decides the times."""

    instance_id: str
    preferred_backup_time: str
    preferred_backup_period: str


@dataclass(frozen=True)
class Window:
    start: datetime
    """UTC, naive (as the catalog keeps times)."""
    end: datetime


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
    midnight = after.replace(hour=0, minute=0, second=0, microsecond=0)
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


def next_backup_time(policy: PolicyTimes, after: datetime) -> datetime:
    """The start of the next automated backup at or after ``after``."""
    for window in windows(policy, after):
        due = window.start + spread_offset(policy.instance_id)
        if due >= after:
            return due
    raise ValueError("the policy has no backup day")
