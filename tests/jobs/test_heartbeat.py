"""Heartbeat: when it renews a lease and records progress (a recording stand-in for the
lease table; the real table is exercised by the runner tests)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from rdsbackup.jobs.leases import PROGRESS_TICK, Heartbeat


class Renewals:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def renew(self, work_id: int, **values: Any) -> bool:
        with self.lock:
            self.calls.append((time.monotonic(), values))
        return True


class Clocked:
    """Progress that moves ``per_second`` points a second from the start."""

    def __init__(self, per_second: float) -> None:
        self.start = time.monotonic()
        self.per_second = per_second

    def values(self) -> dict[str, object]:
        return {"process": min(99, int((time.monotonic() - self.start) * self.per_second))}


def test_process_is_recorded_each_time_it_moved_a_step() -> None:
    renewals, progress = Renewals(), Clocked(per_second=40)
    with Heartbeat(renewals, 1, 60, progress.values, process_step=10):  # type: ignore[arg-type]
        time.sleep(2.5)
    recorded = [v["process"] for _, v in renewals.calls]
    assert len(recorded) >= 5, recorded
    assert all(b - a >= 10 for a, b in itertools.pairwise(recorded)), recorded
    times = [t for t, _ in renewals.calls]
    assert all(b - a >= PROGRESS_TICK * 0.9 for a, b in itertools.pairwise(times))


def test_without_progress_it_renews_once_per_interval() -> None:
    renewals = Renewals()
    with Heartbeat(renewals, 1, 0.5, lambda: {"process": 0}, process_step=10):  # type: ignore[arg-type]
        time.sleep(1.8)
    assert 2 <= len(renewals.calls) <= 4, renewals.calls


def test_without_a_step_progress_waits_for_the_interval() -> None:
    renewals, progress = Renewals(), Clocked(per_second=100)
    with Heartbeat(renewals, 1, 60, progress.values):  # type: ignore[arg-type]
        time.sleep(1.0)
    assert renewals.calls == []
