"""Which backup sets retention removes, and why: pure functions over plain facts.

A set is considered once it is past its expiry (``expire_time``, DescribeBackups'
``ExpectExpireTime``: its end plus the BackupRetentionPeriod it was taken with; none
means kept forever). It is then removed unless, in this order:

- it is pinned (``rdsbackup backup pin``): kept forever;
- it is locked (StoreStatus=Disabled, ``rdsbackup backup lock``);
- it is in use: a restore task reads it, or a backup job runs on its instance and may
  build an incremental on it (the newest full set of its method and the incrementals on
  it);
- a GFS count of its instance's policy keeps it (extension): the first successful full
  set of each of the N newest weeks / months / years that have one;
- an archive rule of its instance's policy keeps it until its archive period ends
  (ArchiveBackupRetentionPeriod days after its start): with ArchiveBackupKeepPolicy
  ``ByMonth`` / ``ByWeek`` the first ArchiveBackupKeepCount successful full sets of each
  calendar month / ISO week (UTC), with ``KeepAll`` every successful full set.

Last, chains are never broken: a set that a kept incremental builds on (directly or
through other incrementals) is kept as long as that incremental is.

Archive and GFS rules choose among successful full sets of the whole instance
(BackupStrategy=instance), manual and automated alike: the set they keep restores on its
own.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rdsbackup.states import BackupStatus


class Reason(enum.StrEnum):
    EXPIRED = "Expired"
    """Removed: past its retention."""
    ARCHIVE_ENDED = "ArchiveEnded"
    """Removed: past its retention and its archive period."""
    PINNED = "Pinned"
    LOCKED = "Locked"
    IN_USE = "InUse"
    GFS = "GFS"
    ARCHIVED = "Archived"
    NEEDED_BY_INCREMENTAL = "NeededByIncremental"


REMOVING = (Reason.EXPIRED, Reason.ARCHIVE_ENDED)


@dataclass(frozen=True)
class SetFacts:
    id: int
    instance_id: str
    status: str
    kind: str
    strategy: str
    start_time: datetime
    expire_time: datetime | None
    parent_id: int | None = None
    pinned: bool = False
    locked: bool = False
    method: str = "Physical"
    end_time: datetime | None = None

    @property
    def archivable(self) -> bool:
        return (
            self.status == BackupStatus.SUCCESS
            and self.kind == "FullBackup"
            and self.strategy == "instance"
        )


@dataclass(frozen=True)
class KeepRules:
    """An instance's archive and GFS settings (from its backup policy)."""

    archive_days: int = 0
    archive_policy: str = "ByMonth"
    archive_count: int = 1
    gfs_weekly: int = 0
    gfs_monthly: int = 0
    gfs_yearly: int = 0


@dataclass(frozen=True)
class Busy:
    reading: frozenset[int] = frozenset()
    """Sets that pending or running restore tasks read."""
    backing_up: frozenset[str] = frozenset()
    """Instances with an unfinished backup job."""


@dataclass(frozen=True)
class Decision:
    backup_id: int
    instance_id: str
    kind: str
    status: str
    start_time: datetime
    expire_time: datetime | None
    reason: Reason
    detail: str
    keep_until: datetime | None = None
    """For an archived set: when its archive period ends."""

    @property
    def remove(self) -> bool:
        return self.reason in REMOVING


@dataclass
class _Kept:
    archive_until: dict[int, datetime] = field(default_factory=dict)
    gfs: dict[int, str] = field(default_factory=dict)
    parents: set[int] = field(default_factory=set)
    """Sets a running backup job may build on (see ``possible_parents``)."""


def decide(
    sets: Sequence[SetFacts], rules: dict[str, KeepRules], busy: Busy, now: datetime
) -> list[Decision]:
    """A decision for every set past its expiry, ordered by instance and id."""
    by_instance: dict[str, list[SetFacts]] = defaultdict(list)
    for b in sets:
        by_instance[b.instance_id].append(b)
    decisions: list[Decision] = []
    for instance_id in sorted(by_instance):
        group = by_instance[instance_id]
        kept = _kept_by_policy(group, rules.get(instance_id, KeepRules()))
        if instance_id in busy.backing_up:
            kept.parents = possible_parents(group)
        own = {
            b.id: _decide_one(b, kept, busy, now)
            for b in group
            if b.expire_time is not None and b.expire_time < now
        }
        _keep_chains(group, own)
        decisions += [own[i] for i in sorted(own)]
    return decisions


def _decide_one(b: SetFacts, kept: _Kept, busy: Busy, now: datetime) -> Decision:
    def verdict(reason: Reason, detail: str, until: datetime | None = None) -> Decision:
        return Decision(
            b.id,
            b.instance_id,
            b.kind,
            b.status,
            b.start_time,
            b.expire_time,
            reason,
            detail,
            until,
        )

    if b.pinned:
        return verdict(Reason.PINNED, "pinned: kept until unpinned")
    if b.locked:
        return verdict(Reason.LOCKED, "StoreStatus is Disabled (locked)")
    if b.id in busy.reading:
        return verdict(Reason.IN_USE, "a restore task reads it")
    if b.id in kept.parents:
        return verdict(Reason.IN_USE, "a backup job runs on its instance and may build on it")
    if b.id in kept.gfs:
        return verdict(Reason.GFS, kept.gfs[b.id])
    until = kept.archive_until.get(b.id)
    if until is not None and until > now:
        return verdict(Reason.ARCHIVED, f"archived until {until:%Y-%m-%d %H:%M}Z", until)
    if until is not None:
        return verdict(Reason.ARCHIVE_ENDED, f"archive period ended {until:%Y-%m-%d %H:%M}Z")
    return verdict(Reason.EXPIRED, f"retention ended {b.expire_time:%Y-%m-%d %H:%M}Z")


def _keep_chains(group: Sequence[SetFacts], own: dict[int, Decision]) -> None:
    """Keep every set a kept set builds on (a set not past its expiry is kept too)."""
    by_id = {b.id: b for b in group}
    work = [b for b in group if b.id not in own or not own[b.id].remove]
    while work:
        child = work.pop()
        parent = by_id.get(child.parent_id) if child.parent_id is not None else None
        if parent is None or parent.id not in own or not own[parent.id].remove:
            continue
        own[parent.id] = replace(
            own[parent.id],
            reason=Reason.NEEDED_BY_INCREMENTAL,
            detail=f"incremental {child.id} builds on it",
            keep_until=None,
        )
        work.append(parent)


def possible_parents(group: Sequence[SetFacts]) -> set[int]:
    """What the incremental planner may choose from (jobs/planning.py): per method and
    strategy, the newest successful full set and the incrementals built on it."""
    ok = [b for b in group if b.status == BackupStatus.SUCCESS]
    by_id = {b.id: b for b in ok}
    found: set[int] = set()
    for method, strategy in {(b.method, b.strategy) for b in ok}:
        same = [b for b in ok if (b.method, b.strategy) == (method, strategy)]
        fulls = [b for b in same if b.kind == "FullBackup"]
        if not fulls:
            continue
        root = max(fulls, key=lambda b: (b.end_time or b.start_time, b.id))
        found |= {b.id for b in same if _root_of(b, by_id) == root.id}
    return found


def _root_of(b: SetFacts, by_id: dict[int, SetFacts]) -> int | None:
    seen = 0
    while b.parent_id is not None:
        parent = by_id.get(b.parent_id)
        if parent is None or seen > 10_000:
            return None
        b, seen = parent, seen + 1
    return b.id


def _kept_by_policy(group: Sequence[SetFacts], rules: KeepRules) -> _Kept:
    candidates = sorted((b for b in group if b.archivable), key=lambda b: (b.start_time, b.id))
    kept = _Kept()
    if rules.archive_days > 0:
        period = timedelta(days=rules.archive_days)
        for b in archived(candidates, rules.archive_policy, rules.archive_count):
            kept.archive_until[b.id] = b.start_time + period
    for name, count, key, label in (
        ("yearly", rules.gfs_yearly, _year, "%Y"),
        ("monthly", rules.gfs_monthly, _month, "%Y-%m"),
        ("weekly", rules.gfs_weekly, _week, "%G-W%V"),
    ):
        for b in firsts_of_newest_periods(candidates, key, count):
            kept.gfs.setdefault(
                b.id, f"GFS {name}: first full set of {b.start_time.strftime(label)}"
            )
    return kept


def archived(candidates: Sequence[SetFacts], policy: str, count: int) -> list[SetFacts]:
    """The sets an archive rule keeps, ``candidates`` sorted oldest first. Any policy
    word but ByWeek and KeepAll is ByMonth (Terraform sends ``0`` for the default)."""
    if policy == "KeepAll":
        return list(candidates)
    key = _week if policy == "ByWeek" else _month
    seen: dict[tuple[int, ...], int] = defaultdict(int)
    chosen: list[SetFacts] = []
    for b in candidates:
        period = key(b.start_time)
        if seen[period] < max(1, count):
            seen[period] += 1
            chosen.append(b)
    return chosen


def firsts_of_newest_periods(
    candidates: Sequence[SetFacts],
    key: Callable[[datetime], tuple[int, ...]],
    count: int,
) -> Iterable[SetFacts]:
    """The first set of each of the ``count`` newest periods that have a set."""
    if count <= 0:
        return []
    first: dict[tuple[int, ...], SetFacts] = {}
    for b in candidates:
        first.setdefault(key(b.start_time), b)
    return [first[k] for k in sorted(first, reverse=True)[:count]]


def _year(t: datetime) -> tuple[int, ...]:
    return (t.year,)


def _month(t: datetime) -> tuple[int, ...]:
    return (t.year, t.month)


def _week(t: datetime) -> tuple[int, ...]:
    iso = t.isocalendar()
    return (iso.year, iso.week)
