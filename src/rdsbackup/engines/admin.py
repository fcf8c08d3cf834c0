"""Database administration the restore paths need, per engine family: list, drop and
copy databases, fingerprint tables, and run the engine's own integrity checks.

A fingerprint maps ``db.table`` (PostgreSQL: ``db.schema.table``) to ``[rows, checksum]``;
the checksum does not depend on row order, so a logical restore compares equal."""

from __future__ import annotations

from abc import ABC, abstractmethod

from rdsbackup.engines.base import ServerAccess

Fingerprint = dict[str, list[object]]


class DatabaseAdmin(ABC):
    @abstractmethod
    def user_databases(self, access: ServerAccess) -> list[str]: ...

    @abstractmethod
    def drop_database(self, access: ServerAccess, name: str) -> None: ...

    @abstractmethod
    def copy_database(
        self, source: ServerAccess, name: str, target: ServerAccess, new_name: str
    ) -> None:
        """Create ``new_name`` on ``target`` (it must not exist) holding ``name`` from
        ``source``: tables, data, views, routines; nothing else on ``target`` changes."""

    @abstractmethod
    def fingerprint(self, access: ServerAccess, databases: list[str]) -> Fingerprint: ...

    @abstractmethod
    def check(self, access: ServerAccess, databases: list[str]) -> list[str]:
        """The engine's own consistency checks; returns the problems found (empty: OK)."""


def admin_for(engine: str) -> DatabaseAdmin:
    from rdsbackup.engines.families import family_of

    try:
        return family_of(engine).admin()
    except KeyError:
        raise KeyError(f"no database admin for {engine!r}") from None
