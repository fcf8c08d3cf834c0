"""The engine families: every fact about an engine name lives here.

The API's ``Engine`` values (``MariaDB``, ``MySQL``, ``PostgreSQL``) each belong to one
family; call sites ask :func:`family_of` rather than comparing names. Drivers are built
lazily so importing this table does not import a database client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rdsbackup.engines.admin import DatabaseAdmin
    from rdsbackup.engines.base import Engine


@dataclass(frozen=True)
class Family:
    name: str
    """The family's own name: the key of drivers, admins and local server kinds."""
    engines: tuple[str, ...]
    """The API ``Engine`` values served by this family."""
    aliases: tuple[str, ...]
    """Other spellings accepted on the command line (matched case-insensitively)."""
    id_prefix: str
    """How its DBInstanceIds start, as on Alibaba RDS."""
    max_name_length: int
    name_length_in_bytes: bool
    """PostgreSQL counts a name's bytes (and truncates silently); MariaDB its characters."""
    reports_collation: bool
    """DescribeDatabases answers a ``Collate`` per database."""
    driver: Callable[[], Engine]
    admin: Callable[[], DatabaseAdmin]


def _mariadb_driver() -> Engine:
    from rdsbackup.engines.mariadb.engine import MariaDBEngine

    return MariaDBEngine()


def _mariadb_admin() -> DatabaseAdmin:
    from rdsbackup.engines.mariadb.admin import MariaDBAdmin

    return MariaDBAdmin()


def _postgres_driver() -> Engine:
    from rdsbackup.engines.postgres.engine import PostgresEngine

    return PostgresEngine()


def _postgres_admin() -> DatabaseAdmin:
    from rdsbackup.engines.postgres.admin import PostgresAdmin

    return PostgresAdmin()


MARIADB = Family(
    name="MariaDB",
    engines=("MariaDB", "MySQL"),
    aliases=("mariadb", "mysql"),
    id_prefix="rm-",
    max_name_length=64,
    name_length_in_bytes=False,
    reports_collation=False,
    driver=_mariadb_driver,
    admin=_mariadb_admin,
)
POSTGRES = Family(
    name="PostgreSQL",
    engines=("PostgreSQL",),
    aliases=("postgresql", "postgres"),
    id_prefix="pgm-",
    max_name_length=63,
    name_length_in_bytes=True,
    reports_collation=True,
    driver=_postgres_driver,
    admin=_postgres_admin,
)
FAMILIES: tuple[Family, ...] = (MARIADB, POSTGRES)
API_ENGINES: tuple[str, ...] = tuple(e for f in FAMILIES for e in f.engines)


def family_of(engine: str) -> Family:
    """The family of an API ``Engine`` value, a family name or an alias (any case)."""
    wanted = engine.lower()
    for family in FAMILIES:
        if wanted in (e.lower() for e in (family.name, *family.engines, *family.aliases)):
            return family
    raise KeyError(f"unknown engine {engine!r}: one of {', '.join(API_ENGINES)}")


def same_family(a: str, b: str) -> bool:
    return family_of(a) is family_of(b)
