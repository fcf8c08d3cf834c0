"""The policy's slots as pure functions: windows, days, the spread, BackupInterval,
incrementals between fulls, deadlines, PreferredNextBackupTime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from rdsbackup import schedule
from rdsbackup.schedule import Slot

MONDAY = datetime(2026, 3, 2)
F, INC = "FullBackup", "IncrementalBackup"


@dataclass
class Policy:
    instance_id: str = "rm-bravo"  # spread offset: 17 minutes
    preferred_backup_time: str = "02:00Z-03:00Z"
    preferred_backup_period: str = "Tuesday,Thursday,Saturday"
    backup_interval: str = "-1"
    enable_increment_data_backup: bool = False
    inc_backup_interval: int = 0


def at(day: int, hh: int, mm: int) -> datetime:
    return MONDAY + timedelta(days=day, hours=hh, minutes=mm)


def test_one_full_per_backup_day_at_the_instances_minute_until_the_window_ends() -> None:
    week = schedule.slots(Policy(), MONDAY, MONDAY + timedelta(days=7))
    assert week == [Slot(at(d, 2, 17), at(d, 3, 0), F) for d in (1, 3, 5)]


def test_instances_spread_over_the_first_45_minutes() -> None:
    offsets = {schedule.spread_offset(f"rm-{n}") for n in range(400)}
    assert offsets == {timedelta(minutes=m) for m in range(45)}
    assert schedule.spread_offset("rm-bravo") == schedule.spread_offset("rm-bravo")


def test_backup_interval_repeats_fulls_on_backup_days_only_until_midnight() -> None:
    policy = Policy(preferred_backup_time="20:00Z-21:00Z", backup_interval="120")
    tuesday = schedule.slots(policy, at(1, 0, 0), at(2, 0, 0))
    assert tuesday == [
        Slot(at(1, 20, 17), at(1, 21, 0), F),
        Slot(at(1, 22, 17), at(2, 0, 17), F),
    ]
    assert schedule.slots(policy, at(2, 0, 0), at(3, 0, 0)) == []  # Wednesday


def test_intervals_are_bounded_below_by_15_minutes() -> None:
    policy = Policy(backup_interval="1", enable_increment_data_backup=True, inc_backup_interval=1)
    assert schedule.full_interval(policy) == schedule.incremental_interval(policy)
    assert schedule.full_interval(policy) == timedelta(minutes=15)
    day = schedule.slots(policy, at(1, 0, 0), at(2, 0, 0))
    assert len(day) == 96  # every 15 minutes, no more
    assert schedule.full_interval(Policy(backup_interval="abc")) is None


def test_incrementals_fall_between_fulls_on_every_day() -> None:
    policy = Policy(enable_increment_data_backup=True, inc_backup_interval=480)
    days = schedule.slots(policy, at(1, 0, 0), at(3, 0, 0))
    assert [(s.due, s.kind) for s in days] == [
        (at(1, 2, 17), F),
        (at(1, 10, 17), INC),
        (at(1, 18, 17), INC),
        (at(2, 2, 17), INC),  # Wednesday is no backup day
        (at(2, 10, 17), INC),
        (at(2, 18, 17), INC),
    ]
    assert days[0].deadline == at(1, 3, 0)
    assert days[1].deadline == at(1, 18, 17)  # until the next slot
    assert schedule.incremental_interval(Policy(enable_increment_data_backup=True)) is None
    assert schedule.incremental_interval(Policy(inc_backup_interval=60)) is None


def test_preferred_next_backup_time_is_the_next_windows_backup() -> None:
    policy = Policy(enable_increment_data_backup=True, inc_backup_interval=60)
    assert schedule.next_backup_time(policy, at(0, 12, 0)) == at(1, 2, 17)
    assert schedule.next_backup_time(policy, at(1, 2, 17)) == at(1, 2, 17)
    assert schedule.next_backup_time(policy, at(1, 2, 18)) == at(3, 2, 17)
    every_hour = Policy(preferred_backup_time="20:00Z-21:00Z", backup_interval="60")
    assert schedule.next_backup_time(every_hour, at(1, 21, 30)) == at(3, 20, 17)  # in a window
    for after in (at(0, 0, 0), at(1, 20, 17), at(5, 23, 59)):  # the scheduler's own slot
        due = schedule.next_backup_time(every_hour, after)
        assert Slot(due, due + timedelta(minutes=43), "FullBackup") in schedule.slots(
            every_hour, after - timedelta(minutes=1), due
        )
    with pytest.raises(ValueError, match="no backup day"):
        schedule.next_backup_time(Policy(preferred_backup_period=""), MONDAY)


def test_a_window_at_the_end_of_the_day_stays_on_its_day() -> None:
    policy = Policy(preferred_backup_time="23:00Z-24:00Z", instance_id="rm-echo")  # :42
    assert schedule.slots(policy, at(1, 0, 0), at(2, 0, 0)) == [Slot(at(1, 23, 42), at(2, 0, 0), F)]
