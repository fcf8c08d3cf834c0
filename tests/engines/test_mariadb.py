"""The MariaDB engine against real servers: plans, full Physical (instance and per
database) and Logical sets taken under concurrent writes and restored into fresh
servers; the stream parsers on their own. Incrementals, Snapshots and faults have
their own modules."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

import pymysql
import pytest

from rdsbackup.engines.base import (
    BackupKind,
    BackupMethod,
    BackupPlan,
    BackupResult,
    BackupStrategy,
    EngineError,
    ServerAccess,
    ServerUnavailable,
    ToolFailed,
    UnsupportedPlan,
)
from rdsbackup.engines.mariadb import physical as mariadb_physical
from rdsbackup.engines.mariadb.logical import DumpScanner, SectionFilter
from rdsbackup.engines.mariadb.parallel import Table, deal
from rdsbackup.engines.tools import mysql_option_file
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import Manifest
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import ChecksumMismatch, SetReader, SetWriter
from tests.engines.test_mariadb_kit import (
    ENGINE,
    LOGICAL,
    PHYSICAL,
    SAMPLE,
    Backup,
    assert_replays_to_source,
    query,
    restore_logical,
    restore_physical,
    source_server,
    take,
    user_databases,
    with_password,
    writing,
)
from tests.fixtures.dataset import fingerprint
from tests.fixtures.servers import ServerFactory

SHOP_PHYSICAL = BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB, databases=("shop",))
SHOP_LOGICAL = BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))


def ratio(backup: Backup, expected: int) -> float:
    return backup.raw_bytes() / expected


# -- probe and plans -------------------------------------------------------------------


def test_probe_reads_version_databases_and_size(mariadb: LocalServer) -> None:
    info = ENGINE.probe(mariadb.access())
    assert info.version.count(".") == 2 and info.version[0].isdigit()
    assert info.version == mariadb.version()
    by_name = {d.name: d for d in info.databases}
    assert set(SAMPLE) <= set(by_name)
    assert not {"mysql", "sys", "information_schema", "performance_schema"} & set(by_name)
    assert by_name["shop"].character_set == "utf8mb4"
    assert by_name["shop"].collation == "utf8mb4_unicode_ci"
    assert info.data_bytes > 100_000
    assert info.read_only is False


def test_probe_wrong_password_names_access_denied(mariadb: LocalServer) -> None:
    with pytest.raises(ServerUnavailable, match="Access denied"):
        ENGINE.probe(with_password(mariadb.access(), "wrong"))


def test_probe_unreachable_server() -> None:
    access = ServerAccess("127.0.0.1", 1, "nobody", "x")
    with pytest.raises(ServerUnavailable, match="Can't connect"):
        ENGINE.probe(access)


def _manifest(method: str, strategy: str = "instance", **extra: str) -> Manifest:
    return Manifest(
        "i", "MariaDB", "10.11", method, "FullBackup", strategy, [], [], "", "", extra=extra
    )


INCREMENTAL = BackupKind.INCREMENTAL
GOOD_PARENT = _manifest("Physical", to_lsn="123")


@pytest.mark.parametrize(
    ("plan", "no_data_dir", "what"),
    [
        (BackupPlan(BackupMethod.SNAPSHOT), True, "method"),
        (BackupPlan(BackupMethod.SNAPSHOT, kind=INCREMENTAL, parent=GOOD_PARENT), False, "kind"),
        (BackupPlan(BackupMethod.SNAPSHOT, BackupStrategy.DB, databases=("a",)), False, "strategy"),
        (BackupPlan(BackupMethod.LOGICAL, kind=INCREMENTAL, parent=GOOD_PARENT), False, "kind"),
        (BackupPlan(BackupMethod.PHYSICAL, kind=INCREMENTAL), False, "kind"),
        (
            BackupPlan(BackupMethod.PHYSICAL, kind=INCREMENTAL, parent=_manifest("Logical")),
            False,
            "kind",
        ),
        (
            BackupPlan(BackupMethod.PHYSICAL, kind=INCREMENTAL, parent=_manifest("Physical")),
            False,
            "kind",
        ),
        (
            BackupPlan(
                BackupMethod.PHYSICAL,
                kind=INCREMENTAL,
                parent=_manifest("Physical", "db", to_lsn="1"),
            ),
            False,
            "kind",
        ),
        (
            BackupPlan(
                BackupMethod.PHYSICAL,
                BackupStrategy.DB,
                INCREMENTAL,
                databases=("a",),
                parent=GOOD_PARENT,
            ),
            False,
            "kind",
        ),
        (BackupPlan(BackupMethod.PHYSICAL), True, "method"),
        (
            BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB, databases=("my-db",)),
            False,
            "strategy",
        ),
        (BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB), False, "strategy"),
        (BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB), False, "strategy"),
        (
            BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("--all",)),
            False,
            "strategy",
        ),
    ],
)
def test_check_plan_refuses(plan: BackupPlan, no_data_dir: bool, what: str) -> None:
    access = ServerAccess("127.0.0.1", 1, "u", "p", None if no_data_dir else Path("/x"))
    with pytest.raises(UnsupportedPlan) as caught:
        ENGINE.check_plan(plan, access)
    assert caught.value.what == what
    assert caught.value.reason


def test_check_plan_accepts_supported_plans(tmp_path: Path, mariadb: LocalServer) -> None:
    access = mariadb.access()
    for plan in (
        PHYSICAL,
        LOGICAL,
        BackupPlan(BackupMethod.SNAPSHOT),
        SHOP_PHYSICAL,
        SHOP_LOGICAL,
        BackupPlan(BackupMethod.PHYSICAL, kind=INCREMENTAL, parent=GOOD_PARENT),
    ):
        ENGINE.check_plan(plan, access)
    missing = BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB, databases=("shop", "nope"))
    ENGINE.check_plan(missing, access)  # the service checks names; the backup fails
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(EngineError, match="no such database: nope"):
        ENGINE.backup(access, missing, sink, lambda _: None)


def test_expected_bytes_follow_the_methods(mariadb: LocalServer) -> None:
    access = mariadb.access()
    physical = ENGINE.expected_bytes(access, PHYSICAL)
    snapshot = ENGINE.expected_bytes(access, BackupPlan(BackupMethod.SNAPSHOT))
    logical = ENGINE.expected_bytes(access, LOGICAL)
    shop = ENGINE.expected_bytes(access, SHOP_LOGICAL)
    partial = ENGINE.expected_bytes(access, SHOP_PHYSICAL)
    assert snapshot > physical > partial > logical > shop > 0


# -- physical --------------------------------------------------------------------------


def test_physical_under_writes_restores_to_its_position(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    source = source_server(server_factory)
    access = source.access()
    started = datetime.now(UTC)
    with writing(access):
        expected = ENGINE.expected_bytes(access, PHYSICAL)
        backup = take(tmp_path, access, PHYSICAL)
    result = backup.done
    assert backup.names() == {
        "data.xbstream.zst",
        "xtrabackup_checkpoints.zst",
        "xtrabackup_info.zst",
    }
    assert result.engine_version == source.version()
    assert set(result.databases) == set(SAMPLE)
    assert set(result.consistent_position) == {"binlog_file", "binlog_pos", "gtid"}
    assert result.extra["backup_type"] == "full-backuped"
    assert int(result.extra["to_lsn"]) > int(result.extra["from_lsn"]) == 0
    assert int(result.extra["innodb_pages_written"]) >= 0
    assert result.consistent_time is not None
    assert started <= result.consistent_time <= datetime.now(UTC)
    assert "mariadb-backup" in result.tool_versions
    assert backup.phases == ["Preparing", "Uploading", "Checking"]
    assert 0.7 < ratio(backup, expected) < 1.3

    target = restore_physical(backup, server_factory)
    assert user_databases(target.access()) == set(SAMPLE)
    assert_replays_to_source(backup, source, target)


def test_physical_per_database_holds_its_databases(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """A partial set restores a server with ``shop`` (and the system schemas) only;
    ``analytics`` tables are orphans there until dropped."""
    source = source_server(server_factory)
    access = source.access()
    with writing(access):
        expected = ENGINE.expected_bytes(access, SHOP_PHYSICAL)
        backup = take(tmp_path, access, SHOP_PHYSICAL)
    assert backup.done.databases == ["shop"]
    assert 0.7 < ratio(backup, expected) < 1.3

    target = restore_physical(backup, server_factory)
    assert user_databases(target.access()) == {"shop"}
    assert_replays_to_source(backup, source, target, ("shop",), only="shop")
    # what the module docstring promises about the other databases' tables
    query(target.access(), "CREATE DATABASE analytics")
    with pytest.raises(pymysql.err.OperationalError, match="already exists"):
        query(target.access(), "CREATE TABLE analytics.customers (id INT)")
    query(target.access(), "DROP DATABASE analytics")  # drops its orphans too
    query(target.access(), "CREATE DATABASE analytics")
    query(target.access(), "CREATE TABLE analytics.orders (id INT PRIMARY KEY)")
    query(target.access(), "CREATE TABLE analytics.customers (id INT PRIMARY KEY)")


def test_physical_corrupt_object_fails_restore(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    backup = take(tmp_path, mariadb.access(), PHYSICAL)
    _flip_byte(backup.storage.path("set/data.xbstream.zst"))
    with pytest.raises(ChecksumMismatch, match=r"data\.xbstream"):
        backup.reader().verify_all()
    target = server_factory("MariaDB", initialize=False)
    with pytest.raises(ChecksumMismatch, match=r"data\.xbstream"):
        ENGINE.restore_physical(backup.manifest, backup.reader(), target.data_dir, [])


def test_physical_wrong_password_names_access_denied(tmp_path: Path, mariadb: LocalServer) -> None:
    access = with_password(mariadb.access(), "wrong")
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(ServerUnavailable, match="Access denied"):
        ENGINE.backup(access, PHYSICAL, sink, lambda _: None)
    with pytest.raises(ToolFailed, match=r"^mariadb-backup exited with 1: .*Access denied"):
        mariadb_physical.backup_physical(access, PHYSICAL, sink, lambda _: None)


def test_physical_restore_needs_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "ibdata1").write_bytes(b"x")
    manifest = _manifest("Physical")
    reader = SetReader(LocalStorage(tmp_path / "s"), "set", manifest)
    with pytest.raises(EngineError, match="empty"):
        ENGINE.restore_physical(manifest, reader, tmp_path, [])


# -- logical ---------------------------------------------------------------------------


def test_logical_under_writes_restores_to_its_position(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    source = source_server(server_factory)
    access = source.access()
    plan = BackupPlan(BackupMethod.LOGICAL, parallel=3)
    started = datetime.now(UTC)
    with writing(access):
        expected = ENGINE.expected_bytes(access, plan)
        backup = take(tmp_path, access, plan)
    result = backup.done
    assert backup.names() == {
        "schema.sql.zst",
        "data-1.sql.zst",
        "data-2.sql.zst",
        "data-3.sql.zst",
        "objects.sql.zst",
    }
    assert backup.phases == ["Preparing", "Uploading", "Checking"]
    assert set(result.databases) == set(SAMPLE)
    assert result.extra["workers"] == "3"
    assert int(result.extra["lock_ms"]) < 5000
    assert result.consistent_time is not None
    assert started <= result.consistent_time <= datetime.now(UTC)
    assert "mariadb-dump" in result.tool_versions
    assert 0.5 < ratio(backup, expected) < 2

    for k in (1, 2, 3):  # loaded side by side: no LOCK TABLES (see ROWS_DUMP)
        with backup.reader().open(f"data-{k}.sql") as f:
            assert b"LOCK TABLES" not in f.read()
    target = restore_logical(backup, server_factory)
    assert user_databases(target.access()) == set(SAMPLE)
    views = query(target.access(), "SELECT COUNT(*) FROM shop.customer_totals")
    assert views[0][0] > 0
    assert_replays_to_source(backup, source, target)


_CHARSETS_SQL = [
    "CREATE DATABASE chars CHARACTER SET latin1",
    "CREATE TABLE chars.`tàble` (id INT PRIMARY KEY,"
    " `cölumn` VARCHAR(20) CHARACTER SET latin1 DEFAULT 'é' COMMENT 'café ✓',"
    " u VARCHAR(20) CHARACTER SET utf8mb4 DEFAULT '✓', w VARCHAR(20) CHARACTER SET ucs2,"
    " s VARCHAR(20) CHARACTER SET sjis, c VARCHAR(20) CHARACTER SET cp1251,"
    " b VARBINARY(300), t TEXT CHARACTER SET utf8mb4) COMMENT 'tablé ✓'",
    "CREATE TABLE chars.log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(50) CHARSET utf8mb4)",
    "CREATE TRIGGER chars.noted AFTER INSERT ON chars.`tàble` FOR EACH ROW"
    " INSERT INTO chars.log (msg) VALUES (CONCAT('ünï ✓ ', NEW.id))",
    "INSERT INTO chars.`tàble` VALUES (1, 'é''\\\\x', '😀✓ä', 'ä✓', 'ソ表能', 'Привет',"
    " %s, 'line1\\nline2\\ttab\\\\ \"q\"')",
    "INSERT INTO chars.`tàble` (id) VALUES (2)",
    "CREATE SEQUENCE chars.seq START WITH 100",
    "CREATE TABLE chars.part (a INT) ENGINE=MyISAM",
    "INSERT INTO chars.part VALUES (1), (2)",
    "CREATE TABLE chars.merged (a INT) ENGINE=MRG_MyISAM UNION=(chars.part)",
    "CREATE VIEW chars.`vué` AS SELECT id, `cölumn`, 'vüe ✓' AS lit FROM chars.`tàble`",
    "CREATE FUNCTION chars.`fün`() RETURNS VARCHAR(20) CHARSET latin1 DETERMINISTIC RETURN 'fün é'",
]
_CHARSETS_CHECK = [
    "SHOW CREATE TABLE chars.`tàble`",
    "SHOW CREATE VIEW chars.`vué`",
    "SHOW CREATE FUNCTION chars.`fün`",
    "SELECT id, HEX(`cölumn`), HEX(u), HEX(w), HEX(s), HEX(c), HEX(b), HEX(t)"
    " FROM chars.`tàble` ORDER BY id",
    "SELECT id, HEX(msg) FROM chars.log ORDER BY id",
    "SELECT * FROM chars.`vué` ORDER BY id",
    "SELECT chars.`fün`(), (SELECT COUNT(*) FROM chars.merged)",
    "SELECT action_statement FROM information_schema.triggers WHERE trigger_schema = 'chars'",
]


def test_logical_keeps_character_sets_sequences_and_merge_tables(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """Rows travel as binary, definitions as utf8mb4: a latin1 column's non-ASCII default,
    multi-byte and binary values, a sequence, a MERGE table, and a trigger (which must
    not fire while the rows load) all come back as they were."""
    source = server_factory("MariaDB")
    source.start()
    for sql in _CHARSETS_SQL:
        query(source.access(), sql, (bytes(range(256)),) if "%s" in sql else ())
    query(source.access(), "SELECT NEXTVAL(chars.seq)")
    backup = take(tmp_path, source.access(), LOGICAL)
    assert backup.names() == {
        "schema.sql.zst",
        "data-1.sql.zst",
        "data-2.sql.zst",
        "objects.sql.zst",
    }
    assert int(backup.done.extra["ddl_lock_ms"]) >= int(backup.done.extra["lock_ms"])

    target = restore_logical(backup, server_factory)
    for sql in _CHARSETS_CHECK:
        assert query(target.access(), sql) == query(source.access(), sql), sql
    assert query(target.access(), "SELECT HEX(b) FROM chars.`tàble` WHERE id = 1") == [
        (bytes(range(256)).hex().upper(),)
    ]
    assert query(target.access(), "SELECT NEXTVAL(chars.seq)")[0][0] > 100


def test_logical_db_backup_holds_only_its_databases(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    source = mariadb.access()
    backup = take(tmp_path, source, SHOP_LOGICAL)
    assert backup.done.databases == ["shop"]
    target = restore_logical(backup, server_factory)
    assert user_databases(target.access()) == {"shop"}
    assert fingerprint("MariaDB", target.access()) == fingerprint("MariaDB", source, ["shop"])


def test_logical_backup_of_an_instance_without_user_databases_restores(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    empty = server_factory("MariaDB", initialize=True)
    empty.start()
    plan = BackupPlan(BackupMethod.LOGICAL, fingerprint=True)
    backup = take(tmp_path, empty.access(), plan)
    assert backup.done.databases == []
    assert backup.done.fingerprints == {}
    assert {"binlog_file", "binlog_pos"} <= set(backup.done.consistent_position)
    assert backup.names() == {"objects.sql.zst"}
    target = restore_logical(backup, server_factory)
    assert user_databases(target.access()) == set()


def test_logical_restore_of_chosen_databases(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    source = mariadb.access()
    backup = take(tmp_path, source, LOGICAL)
    target = restore_logical(backup, server_factory, ("analytics",))
    assert user_databases(target.access()) == {"analytics"}
    assert fingerprint("MariaDB", target.access()) == fingerprint("MariaDB", source, ["analytics"])
    with pytest.raises(EngineError, match="nope"):
        ENGINE.restore_logical(backup.manifest, backup.reader(), target.access(), ("nope",))


def test_logical_single_stream_sets_still_restore(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    """Sets of the first engine version hold one ``dump.sql``."""
    source = mariadb.access()
    backup = Backup(LocalStorage(tmp_path / "storage"), "old", LOGICAL)
    with mysql_option_file(source.host, source.port, source.user, source.password) as options:
        dump = subprocess.run(
            ["mariadb-dump", f"--defaults-extra-file={options}", "--databases", *SAMPLE],
            capture_output=True,
            check=True,
        )
    backup.writer.put("dump.sql", io.BytesIO(dump.stdout))
    backup.result = BackupResult(engine_version="10.11.19", databases=list(SAMPLE))
    target = restore_logical(backup, server_factory, ("shop",))
    assert fingerprint("MariaDB", target.access()) == fingerprint("MariaDB", source, ["shop"])


def test_logical_corrupt_object_fails_restore(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    backup = take(tmp_path, mariadb.access(), LOGICAL)
    _flip_byte(backup.storage.path("set/objects.sql.zst"))
    target = server_factory("MariaDB", initialize=True)
    target.start()
    with pytest.raises(ChecksumMismatch, match=r"objects\.sql"):
        ENGINE.restore_logical(backup.manifest, backup.reader(), target.access())


def test_logical_wrong_password_names_access_denied(tmp_path: Path, mariadb: LocalServer) -> None:
    access = with_password(mariadb.access(), "wrong")
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(ServerUnavailable, match="Access denied"):
        ENGINE.backup(access, LOGICAL, sink, lambda _: None)


# -- the dump parsers ------------------------------------------------------------------

_DUMP = b"""/*M!999999\\- enable the sandbox mode */
SET NAMES utf8mb4;
--
-- Current Database: `a`
--

CREATE DATABASE `a`;
USE `a`;
--
-- Table structure for table `t`
--
INSERT INTO t VALUES (1,'-- Table structure for table `x`');
DELIMITER ;;
CREATE PROCEDURE p()
BEGIN
-- Current Database: `b`
-- Table structure for table `y`
SELECT 1;
END ;;
DELIMITER ;
--
-- Current Database: `b`
--

CREATE DATABASE `b`;
USE `b`;
--
-- Table structure for table `we``ird`
--
INSERT INTO t VALUES (2);
--
-- Current Database: `we``ird`
--

USE `we``ird`;
"""


class Trickle(io.RawIOBase):
    """Gives at most ``piece`` bytes a read, as a pipe might."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.pos = data, piece, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.piece if size < 0 else min(size, self.piece)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def filtered(databases: tuple[str, ...], piece: int = 1 << 20) -> tuple[bytes, set[str]]:
    sections = SectionFilter(cast(BinaryIO, Trickle(_DUMP, piece)), databases)
    return b"".join(sections.chunks()), sections.missing()


@pytest.mark.parametrize("piece", [1, 5, 64, 1 << 20])
def test_section_filter_keeps_header_and_chosen_sections(piece: int) -> None:
    out, missing = filtered(("b",), piece)
    assert missing == set()
    assert out.startswith(b"/*M!999999")
    assert b"USE `b`;\n--\n-- Table structure for table `we``ird`" in out
    assert b"USE `a`" not in out and b"PROCEDURE" not in out and b"USE `we``ird`" not in out


def test_section_filter_ignores_marks_inside_routines() -> None:
    out, _ = filtered(("a",))
    assert b"CREATE PROCEDURE p()" in out and b"END ;;\nDELIMITER ;\n" in out
    assert b"VALUES (2)" not in out


def test_section_filter_quoted_names_and_missing() -> None:
    out, missing = filtered(("we`ird", "zz"))
    assert b"USE `we``ird`;" in out and b"USE `a`" not in out
    assert missing == {"zz"}
    everything, _ = filtered(())
    assert everything == _DUMP


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_dump_scanner_notes_sections_and_tables(piece: int) -> None:
    long_lines = b"-" * 3000 + b"\nD" + b"x" * 2000 + b"\n(1,'-- Table structure for table `z`')\n"
    stream = _DUMP + long_lines + b"-- Dump completed on x\n"
    scanner = DumpScanner(cast(BinaryIO, Trickle(stream, piece)))
    out = b"".join(iter(lambda: scanner.read1(piece), b""))
    assert out == stream
    assert scanner.databases == ["a", "b", "we`ird"]
    assert scanner.tables == [("a", "t"), ("b", "we`ird")]
    assert scanner.completed


def test_deal_balances_the_biggest_tables_first() -> None:
    tables = [Table("d", f"t{n}", size) for n, size in enumerate([50, 40, 30, 20, 10, 0])]
    tables.append(Table("d", "v", 0, "VIEW"))
    groups = deal(tables, 2)
    assert [sorted(t.name for t in g) for g in groups] == [["t0", "t3", "t4"], ["t1", "t2", "t5"]]
    assert deal(tables[:1], 4) == [[tables[0]]]
    assert deal([], 3) == []


def test_parse_mariadb_backup_metadata() -> None:
    info = "binlog_pos = filename 'binlog.000002', position '1159', GTID of the last change '0-1-5'"
    assert mariadb_physical.parse_position(info, []) == {
        "binlog_file": "binlog.000002",
        "binlog_pos": "1159",
        "gtid": "0-1-5",
    }
    log = ["[00] 2026-11-28 17:33:39 MySQL binlog position: filename 'b.000009', position '4'"]
    assert mariadb_physical.parse_position("", log) == {
        "binlog_file": "b.000009",
        "binlog_pos": "4",
    }
    assert mariadb_physical.parse_position("", ["[00] completed OK!"]) == {}
    checkpoints = "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 44744\nlast_lsn = 48187\n"
    assert mariadb_physical.parse_checkpoints(checkpoints) == {
        "backup_type": "full-backuped",
        "from_lsn": "0",
        "to_lsn": "44744",
        "last_lsn": "48187",
    }
    with pytest.raises(ToolFailed, match="to_lsn"):
        mariadb_physical.parse_checkpoints("backup_type = full-backuped\nfrom_lsn = 0\n")


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
