"""The catalog's named lease on SQLite and PostgreSQL: one holder among contenders,
renewal, expiry, release."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from rdsbackup.catalog.db import Catalog
from rdsbackup.clock import ManualClock
from rdsbackup.service.lease import NamedLease

NOON = datetime(2026, 3, 2, 12)


def test_of_many_contenders_at_once_exactly_one_holds(catalog: Catalog) -> None:
    clock = ManualClock(NOON)
    leases = [NamedLease(catalog, "scheduler", f"node-{n}", 60, clock) for n in range(10)]
    barrier = threading.Barrier(len(leases))
    held: list[str] = []

    def contend(lease: NamedLease) -> None:
        barrier.wait()
        if lease.hold():
            held.append(lease.owner)

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 1
    holder = next(x for x in leases if x.owner == held[0])
    assert [x.hold() for x in leases].count(True) == 1  # renewals: still only it
    assert holder.hold()


def test_a_lease_expires_unless_renewed_and_goes_at_release(catalog: Catalog) -> None:
    clock = ManualClock(NOON)
    a = NamedLease(catalog, "scheduler", "node-a", 60, clock)
    b = NamedLease(catalog, "scheduler", "node-b", 60, clock)
    assert a.hold() and not b.hold()
    clock.advance(timedelta(seconds=50))
    assert a.hold()  # renewed until 12:01:50
    clock.advance(timedelta(seconds=50))
    assert not b.hold()
    clock.advance(timedelta(seconds=11))
    assert b.hold() and not a.hold()  # expired: b took it
    b.release()
    assert a.hold()
    other = NamedLease(catalog, "other-singleton", "node-b", 60, clock)
    assert other.hold()  # names are independent
