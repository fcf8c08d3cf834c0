"""Logical backups of PostgreSQL (pg_dump/pg_dumpall, restored with psql and
pg_restore --jobs) against real servers. (Under concurrent writes:
``test_postgres.py::test_backup_under_load_*``; faults: ``test_postgres_faults.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from rdsbackup.engines.base import (
    BackupMethod,
    BackupPlan,
    BackupStrategy,
    EngineError,
    ServerAccess,
    ServerUnavailable,
    ToolFailed,
)
from rdsbackup.engines.postgres import logical as postgres_logical
from rdsbackup.instances.servers import LocalServer
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import ChecksumMismatch, SetWriter
from tests.engines.test_postgres import (
    ENGINE,
    LOGICAL,
    PG,
    SAMPLE,
    connect,
    flip_byte,
    lsn,
    near,
    query,
    restore_logical,
    take,
    user_databases,
    with_password,
)
from tests.fixtures.dataset import fingerprint
from tests.fixtures.servers import ServerFactory

WEIRD_DB = "we'ird db=x \\ ü\"%"


def test_logical_instance_backup_restores_every_table(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    source = postgres.access()
    before = fingerprint(PG, source)
    backup = take(tmp_path, source, LOGICAL)
    result = backup.result
    assert result is not None
    assert backup.names() == {
        "globals.sql.zst",
        "db/analytics.dump.zst",
        "db/postgres.dump.zst",
        "db/shop.dump.zst",
    }
    assert result.databases == ["analytics", "postgres", "shop"]
    assert set(result.consistent_position) == {"start_lsn", "stop_lsn"}
    position = result.consistent_position
    assert lsn(position["start_lsn"]) <= lsn(position["stop_lsn"])
    assert set(result.tool_versions) == {"pg_dump", "pg_dumpall"}
    assert backup.phases == ["Preparing", "Uploading"]
    assert "role_passwords" not in result.extra
    raw = sum(o.raw_size for o in backup.manifest.objects)
    assert near(raw, ENGINE.expected_bytes(source, LOGICAL), 0.25)

    target = restore_logical(backup, server_factory)
    assert fingerprint(PG, target.access()) == before
    assert user_databases(target.access()) == set(SAMPLE)


def test_logical_backup_of_an_instance_without_user_databases_restores_its_globals(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    empty = server_factory(PG, initialize=True)
    empty.start()
    with connect(empty.access()) as conn:
        conn.execute("CREATE ROLE app_reader LOGIN")
    backup = take(tmp_path, empty.access(), LOGICAL)
    assert backup.result is not None and backup.result.databases == ["postgres"]
    assert backup.names() == {"globals.sql.zst", "db/postgres.dump.zst"}
    target = restore_logical(backup, server_factory)
    assert user_databases(target.access()) == set()
    assert query(
        target.access(), "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app_reader'"
    ) == [(True,)]


def test_logical_db_backup_holds_only_its_databases(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    source = postgres.access()
    plan = BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))
    backup = take(tmp_path, source, plan)
    assert backup.result is not None and backup.result.databases == ["shop"]
    assert backup.names() == {"globals.sql.zst", "db/shop.dump.zst"}
    target = restore_logical(backup, server_factory)
    assert user_databases(target.access()) == {"shop"}
    assert fingerprint(PG, target.access()) == fingerprint(PG, source, ["shop"])


def test_logical_restore_of_chosen_databases(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    source = postgres.access()
    backup = take(tmp_path, source, LOGICAL)
    target = restore_logical(backup, server_factory, ("analytics",))
    assert user_databases(target.access()) == {"analytics"}
    assert fingerprint(PG, target.access()) == fingerprint(PG, source, ["analytics"])
    with pytest.raises(EngineError, match="nope"):
        ENGINE.restore_logical(backup.manifest, backup.reader(), target.access(), ("nope",))
    # restoring into a database that already has the tables fails with pg_restore's reason
    with pytest.raises(ToolFailed, match=r"pg_restore exited with 1: .*already exists"):
        ENGINE.restore_logical(backup.manifest, backup.reader(), target.access(), ("analytics",))


def test_logical_odd_names_roles_and_passwords(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """A database whose name needs quoting everywhere, owned by a role with a password:
    the restore recreates both, and the target's admin keeps its own password."""
    server = server_factory(PG)
    server.start()
    access = server.access()
    with connect(access) as conn:
        conn.execute(b"CREATE ROLE app LOGIN PASSWORD 'app-pw'")
        conn.execute(b'CREATE ROLE "we""ird role" NOLOGIN IN ROLE app')
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(WEIRD_DB)))
    with connect(access, WEIRD_DB) as conn:
        conn.execute(b"CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute(b"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
        conn.execute(b"ALTER TABLE t OWNER TO app")
    plan = BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=(WEIRD_DB,))
    backup = take(tmp_path, access, plan)
    (dump,) = backup.names() - {"globals.sql.zst"}
    assert dump == "db/we%27ird%20db%3Dx%20%5C%20%C3%BC%22%25.dump.zst"
    assert postgres_logical.object_name(WEIRD_DB) + ".zst" == dump

    target = restore_logical(backup, server_factory, admin_password="another-pw")
    restored = target.access()
    assert restored.password == "another-pw"
    assert user_databases(restored) == {WEIRD_DB}
    assert fingerprint(PG, restored) == fingerprint(PG, access)
    owner = query(restored, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname ~ 'ird'")
    assert owner == [("app",)]
    app = ServerAccess(restored.host, restored.port, "app", "app-pw")
    assert query(app, "SELECT count(*) FROM t", WEIRD_DB) == [(500,)]
    members = query(restored, "SELECT pg_has_role('we\"ird role', 'app', 'MEMBER')")
    assert members == [(True,)]


def test_logical_corrupt_object_fails_restore_before_loading(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    plan = BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))
    backup = take(tmp_path, postgres.access(), plan)
    flip_byte(backup.storage.path("set/db/shop.dump.zst"))
    target = server_factory(PG, initialize=True)
    target.start()
    with pytest.raises(ChecksumMismatch, match=r"shop\.dump"):
        ENGINE.restore_logical(backup.manifest, backup.reader(), target.access())
    assert user_databases(target.access()) == set()


def test_logical_wrong_password_names_the_reason(tmp_path: Path, postgres: LocalServer) -> None:
    access = with_password(postgres.access(), "wrong")
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(ServerUnavailable, match="password authentication failed"):
        ENGINE.backup(access, LOGICAL, sink, lambda _: None)


def test_object_names_are_safe_and_distinct() -> None:
    name = postgres_logical.object_name
    assert name("shop") == "db/shop.dump"
    assert name("a.b-c_D9") == "db/a.b-c_D9.dump"
    assert name("../x") == "db/..%2Fx.dump"
    assert name("a%2F") != name("a/")
    assert name("ü") == "db/%C3%BC.dump"


def test_filter_globals_keeps_existing_roles_untouched() -> None:
    script = (
        "CREATE ROLE admin;\n"
        "ALTER ROLE admin WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$x';\n"
        "CREATE ROLE app;\n"
        "ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$y';\n"
        'CREATE ROLE "we""ird";\n'
        'ALTER ROLE "we""ird" WITH NOLOGIN;\n'
        "ALTER ROLE admin SET work_mem TO '8MB';\n"
        "GRANT app TO admin GRANTED BY admin;\n"
    )
    kept = postgres_logical.filter_globals(script, ["admin", '"we""ird"'])
    assert kept == (
        "CREATE ROLE app;\n"
        "ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$y';\n"
        "ALTER ROLE admin SET work_mem TO '8MB';\n"
        "GRANT app TO admin GRANTED BY admin;\n"
    )
