"""Where the time comes from, for code that must be testable across days in seconds
(the scheduler): a ``Clock`` answers naive UTC datetimes, as the catalog keeps them."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Protocol

from rdsbackup.timeutil import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time: UTC, naive."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class ManualClock:
    """A clock that moves only when told to (tests; it may also be set backwards)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, by: timedelta) -> datetime:
        with self._lock:
            self._now += by
            return self._now
