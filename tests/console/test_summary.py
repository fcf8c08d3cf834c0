"""Protection, ETA and the units the pages print."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from rdsbackup.console.summary import allowed_age, eta, size, window_length
from rdsbackup.service.views import JobView

NOW = datetime(2026, 12, 2, 12, 0)


class _Policy:
    def __init__(self, period: str, window: str = "02:00Z-03:00Z") -> None:
        self.preferred_backup_period = period
        self.preferred_backup_time = window


@pytest.mark.parametrize(
    ("period", "window", "allowed"),
    [
        ("Monday,Tuesday,Wednesday,Thursday,Friday,Saturday,Sunday", "02:00Z-03:00Z", 25),
        ("Tuesday,Thursday,Saturday", "02:00Z-03:00Z", 3 * 24 + 1),  # Sat -> Tue
        ("Sunday", "23:00Z-01:00Z", 7 * 24 + 2),  # one day a week, window across midnight
        ("Monday,Friday", "00:00Z-24:00Z", 4 * 24 + 24),
    ],
)
def test_a_set_may_be_as_old_as_the_longest_gap_plus_the_window(
    period: str, window: str, allowed: int
) -> None:
    assert allowed_age(_Policy(period, window)) == timedelta(hours=allowed)  # type: ignore[arg-type]


def test_a_window_that_cannot_be_read_counts_one_hour() -> None:
    assert window_length("whenever") == timedelta(hours=1)


def _job(**changes: object) -> JobView:
    job = JobView(
        id=1,
        instance_id="rm-x",
        status="Uploading",
        progress_status="Uploading",
        process=25,
        job_mode="Manual",
        task_action="TempTask",
        method="Physical",
        kind="FullBackup",
        strategy="instance",
        db_names=[],
        created_at=NOW - timedelta(seconds=70),
        started_at=NOW - timedelta(seconds=60),
        finished_at=None,
        bytes_done=250,
        bytes_expected=1000,
        failed_reason="",
        backup_id=None,
    )
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


def test_eta_is_the_time_left_at_the_rate_so_far() -> None:
    assert eta(_job(), NOW) == timedelta(seconds=180)  # a quarter in 60 s: 3 more minutes


@pytest.mark.parametrize(
    "changes",
    [{"bytes_done": 0}, {"started_at": None}, {"bytes_done": 1000}, {"bytes_expected": 0}],
)
def test_no_eta_without_a_rate_or_a_size_to_reach(changes: dict[str, object]) -> None:
    assert eta(_job(**changes), NOW) is None


def test_sizes_in_binary_units() -> None:
    assert [size(n) for n in (93, 2048, 5 * 2**30)] == ["93 B", "2.0 KiB", "5.0 GiB"]
