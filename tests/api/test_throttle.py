from __future__ import annotations

from rdsbackup.ratelimit import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_per_key() -> None:
    clock = Clock()
    throttle = Throttle(rate=2, burst=3, clock=clock)
    assert [throttle.allow("k1") for _ in range(4)] == [True, True, True, False]
    assert throttle.allow("k2")  # another key has its own bucket
    clock.now += 0.5  # one token back at 2/s
    assert throttle.allow("k1") and not throttle.allow("k1")
    clock.now += 60  # refills to the burst, no more
    assert [throttle.allow("k1") for _ in range(4)] == [True, True, True, False]
