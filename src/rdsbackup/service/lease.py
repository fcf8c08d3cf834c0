"""A named lease in the catalog: what makes exactly one node do a singleton's work (the
scheduler), however many processes share the catalog.

Taking or renewing it is one conditional UPDATE (``owner`` is me, or the lease has
expired), else the INSERT of the row; the database decides between two contenders
(SQLite serialises writers at ``BEGIN IMMEDIATE``; PostgreSQL re-checks the UPDATE's
condition on the row it waited for, and the primary key refuses a second INSERT).
Expiry is read on the caller's clock: a holder whose clock went backwards keeps its
lease a little longer, never shares it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case, delete, or_, update
from sqlalchemy.exc import IntegrityError

from rdsbackup.catalog.db import Catalog, affected
from rdsbackup.catalog.models import Lease
from rdsbackup.clock import Clock


class NamedLease:
    def __init__(
        self, catalog: Catalog, name: str, owner: str, seconds: float, clock: Clock
    ) -> None:
        self.catalog = catalog
        self.name = name
        self.owner = owner
        self.ttl = timedelta(seconds=seconds)
        self.clock = clock

    def hold(self) -> bool:
        """Take or renew the lease; False while another owner holds it."""
        now = self.clock.now()
        with self.catalog.write() as s:
            taken = s.execute(
                update(Lease)
                .where(
                    Lease.name == self.name,
                    or_(Lease.owner == self.owner, Lease.expires_at <= now),
                )
                .values(
                    acquired_at=case((Lease.owner == self.owner, Lease.acquired_at), else_=now),
                    owner=self.owner,
                    expires_at=now + self.ttl,
                )
            )
            if affected(taken) == 1:
                return True
        try:
            with self.catalog.write() as s:
                s.add(
                    Lease(
                        name=self.name, owner=self.owner, acquired_at=now, expires_at=now + self.ttl
                    )
                )
        except IntegrityError:
            return False  # the row exists: someone else holds it
        return True

    def release(self) -> None:
        """Give the lease up (at stop), so another node takes over at its next try."""
        with self.catalog.write() as s:
            s.execute(delete(Lease).where(Lease.name == self.name, Lease.owner == self.owner))
