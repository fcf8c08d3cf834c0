"""What the pages show that no service call answers directly: protection, ages, ETA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rdsbackup.schedule import WEEKDAYS
from rdsbackup.service.policies import PolicyView
from rdsbackup.service.views import BackupView, InstanceView, JobView

DAYS = WEEKDAYS


@dataclass(frozen=True)
class InstanceRow:
    instance: InstanceView
    policy: PolicyView | None
    last_success: BackupView | None
    allowed_age: timedelta | None
    protected: bool


def allowed_age(policy: PolicyView) -> timedelta:
    """The age a last successful set may reach before the policy has missed a backup:
    the longest gap between two backup days plus the window's length (a backup may
    finish at the end of its window)."""
    days = sorted(DAYS.index(d) for d in policy.preferred_backup_period.split(",") if d in DAYS)
    if not days:
        return timedelta(days=7)
    gaps = [(days[(i + 1) % len(days)] - d) % 7 or 7 for i, d in enumerate(days)]
    return timedelta(days=max(gaps)) + window_length(policy.preferred_backup_time)


def window_length(window: str) -> timedelta:
    """``02:00Z-03:00Z`` -> 1 h (a window across midnight wraps)."""
    try:
        start, end = (_minutes(part.rstrip("Z")) for part in window.split("-"))
    except ValueError:
        return timedelta(hours=1)
    return timedelta(minutes=(end - start) % (24 * 60) or 24 * 60)


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def instance_row(
    instance: InstanceView,
    policy: PolicyView | None,
    last_success: BackupView | None,
    now: datetime,
) -> InstanceRow:
    limit = allowed_age(policy) if policy else None
    protected = (
        last_success is not None and limit is not None and now - last_success.end_time <= limit
    )
    return InstanceRow(instance, policy, last_success, limit, protected)


def eta(job: JobView, now: datetime) -> timedelta | None:
    """Time left at the rate so far; None before any byte or without an expected size."""
    if job.started_at is None or job.bytes_done <= 0 or job.bytes_expected <= job.bytes_done:
        return None
    elapsed = (now - job.started_at).total_seconds()
    left = elapsed * (job.bytes_expected - job.bytes_done) / job.bytes_done
    return timedelta(seconds=round(left))


def age(delta: timedelta | None) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``40 s``."""
    if delta is None:
        return ""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def size(n: int) -> str:
    """Binary units, as ``du -h`` and pgBackRest print them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
