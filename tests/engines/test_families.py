"""The family table: every engine name the API or the command line accepts maps to one
family, and what the call sites ask of it (drivers, admins, id prefixes, name limits)."""

from __future__ import annotations

import pytest

from rdsbackup.engines.admin import admin_for
from rdsbackup.engines.families import (
    API_ENGINES,
    FAMILIES,
    MARIADB,
    POSTGRES,
    family_of,
    same_family,
)
from rdsbackup.engines.mariadb.admin import MariaDBAdmin
from rdsbackup.engines.mariadb.engine import MariaDBEngine
from rdsbackup.engines.postgres.admin import PostgresAdmin
from rdsbackup.engines.postgres.engine import PostgresEngine
from rdsbackup.engines.registry import default_registry
from rdsbackup.instances.inventory import new_instance_id


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("MariaDB", MARIADB),
        ("MySQL", MARIADB),
        ("mysql", MARIADB),
        ("PostgreSQL", POSTGRES),
        ("postgres", POSTGRES),
    ],
)
def test_every_spelling_names_one_family(name: str, family: object) -> None:
    assert family_of(name) is family


def test_the_api_engines_are_those_of_the_families() -> None:
    assert API_ENGINES == ("MariaDB", "MySQL", "PostgreSQL")
    assert all(family_of(e).name in {f.name for f in FAMILIES} for e in API_ENGINES)


def test_an_unknown_engine_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match=r"'Oracle'.*MariaDB, MySQL, PostgreSQL"):
        family_of("Oracle")
    with pytest.raises(KeyError, match="Oracle"):
        admin_for("Oracle")
    with pytest.raises(KeyError, match="Oracle"):
        default_registry().for_engine("Oracle")


def test_mysql_and_mariadb_share_drivers_and_sets() -> None:
    registry = default_registry()
    assert isinstance(registry.for_engine("MySQL"), MariaDBEngine)
    assert registry.for_engine("MySQL") is registry.for_engine("MariaDB")
    assert isinstance(registry.for_engine("PostgreSQL"), PostgresEngine)
    assert isinstance(admin_for("MySQL"), MariaDBAdmin)
    assert isinstance(admin_for("PostgreSQL"), PostgresAdmin)
    assert same_family("MySQL", "MariaDB") and not same_family("MySQL", "PostgreSQL")
    assert registry.for_engine("MySQL").family == MARIADB.name


def test_instance_ids_and_name_limits_follow_the_family() -> None:
    assert new_instance_id("MySQL").startswith("rm-")
    assert new_instance_id("PostgreSQL").startswith("pgm-")
    assert (MARIADB.max_name_length, MARIADB.name_length_in_bytes) == (64, False)
    assert (POSTGRES.max_name_length, POSTGRES.name_length_in_bytes) == (63, True)
    assert POSTGRES.reports_collation and not MARIADB.reports_collation
