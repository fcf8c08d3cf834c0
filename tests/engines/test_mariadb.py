"""The MariaDB engine against real servers: backups are taken from the ``mariadb``
fixture, stored in a LocalStorage, checked object by object and restored into fresh
servers, whose tables must match the source's."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pymysql
import pytest

from rdsbackup.engines import mariadb_logical, mariadb_physical
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
from rdsbackup.engines.mariadb import MariaDBEngine
from rdsbackup.engines.mariadb_logical import DumpScanner, SectionFilter, dump_args
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import Manifest, StoredObject
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import ChecksumMismatch, SetReader, SetWriter
from tests.fixtures.dataset import fingerprint, write_load
from tests.fixtures.servers import ServerFactory

ENGINE = MariaDBEngine()
SAMPLE = ("analytics", "shop")
PHYSICAL = BackupPlan(BackupMethod.PHYSICAL)
LOGICAL = BackupPlan(BackupMethod.LOGICAL)


# -- helpers ---------------------------------------------------------------------------


class Backup:
    """One backup set taken into ``storage`` under ``prefix``."""

    def __init__(self, storage: LocalStorage, prefix: str, plan: BackupPlan) -> None:
        self.storage = storage
        self.prefix = prefix
        self.plan = plan
        self.phases: list[str] = []
        self.writer = SetWriter(storage, prefix)
        self.result: BackupResult | None = None

    def run(self, access: ServerAccess) -> Backup:
        self.result = ENGINE.backup(access, self.plan, self.writer, self.phases.append)
        return self

    @property
    def manifest(self) -> Manifest:
        assert self.result is not None
        r = self.result
        return Manifest(
            instance_id="i-test",
            engine="MariaDB",
            engine_version=r.engine_version,
            method=self.plan.method,
            kind=self.plan.kind,
            strategy=self.plan.strategy,
            databases=r.databases,
            objects=list(self.writer.objects),
            started_at="",
            finished_at="",
            tool_versions=r.tool_versions,
            consistent_position=r.consistent_position,
            extra=r.extra,
        )

    def reader(self) -> SetReader:
        return SetReader(self.storage, self.prefix, self.manifest)

    def names(self) -> set[str]:
        return {o.name for o in self.writer.objects}


def take(tmp_path: Path, access: ServerAccess, plan: BackupPlan, name: str = "set") -> Backup:
    backup = Backup(LocalStorage(tmp_path / "storage"), name, plan).run(access)
    backup.reader().verify_all()
    return backup


def restore_physical(backup: Backup, server_factory: ServerFactory) -> LocalServer:
    target = server_factory("MariaDB", initialize=False)
    ENGINE.restore_physical(backup.manifest, backup.reader(), target.data_dir, [])
    target.start()
    return target


def restore_logical(
    backup: Backup, server_factory: ServerFactory, databases: tuple[str, ...] = ()
) -> LocalServer:
    target = server_factory("MariaDB", initialize=True)
    target.start()
    ENGINE.restore_logical(backup.manifest, backup.reader(), target.access(), databases)
    return target


def user_databases(access: ServerAccess) -> set[str]:
    return {d.name for d in ENGINE.probe(access).databases}


def with_password(access: ServerAccess, password: str) -> ServerAccess:
    return ServerAccess(
        access.host, access.port, access.user, password, access.data_dir, access.os_user
    )


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def child_pids(name: str) -> list[int]:
    """Our own child processes running ``name``."""
    me, found = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if stat[1] == me and Path(cmd.decode()).name == name:
            found.append(int(entry.name))
    return found


class KillingSink:
    """A sink that kills the running ``tool`` once ``after`` bytes have arrived, then
    reads the stream to its end like any sink would."""

    def __init__(self, inner: SetWriter, tool: str, after: int) -> None:
        self.inner = inner
        self.tool = tool
        self.after = after
        self.killed: list[int] = []

    def put(self, name: str, stream: BinaryIO) -> StoredObject:
        head = stream.read(self.after)
        for pid in child_pids(self.tool):
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)
        rest = stream.read()
        return self.inner.put(name, io.BytesIO(head + rest))


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


@pytest.mark.parametrize(
    ("plan", "no_data_dir", "what"),
    [
        (BackupPlan(BackupMethod.SNAPSHOT), False, "method"),
        (BackupPlan(BackupMethod.PHYSICAL, kind=BackupKind.INCREMENTAL), False, "kind"),
        (BackupPlan(BackupMethod.LOGICAL, kind=BackupKind.INCREMENTAL), False, "kind"),
        (BackupPlan(BackupMethod.PHYSICAL), True, "method"),
        (
            BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB, databases=("shop",)),
            False,
            "strategy",
        ),
        (BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB), False, "strategy"),
        (
            BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("--all",)),
            False,
            "strategy",
        ),
    ],
)
def test_check_plan_refuses(plan: BackupPlan, no_data_dir: bool, what: str) -> None:
    access = ServerAccess("127.0.0.1", 3306, "u", "p", None if no_data_dir else Path("/x"))
    with pytest.raises(UnsupportedPlan) as caught:
        ENGINE.check_plan(plan, access)
    assert caught.value.what == what
    assert caught.value.reason


def test_check_plan_accepts_supported_plans(mariadb: LocalServer) -> None:
    access = mariadb.access()
    ENGINE.check_plan(PHYSICAL, access)
    ENGINE.check_plan(LOGICAL, access)
    ENGINE.check_plan(
        BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",)), access
    )


def test_expected_bytes(mariadb: LocalServer) -> None:
    access = mariadb.access()
    physical = ENGINE.expected_bytes(access, PHYSICAL)
    logical = ENGINE.expected_bytes(access, LOGICAL)
    shop = ENGINE.expected_bytes(
        access, BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))
    )
    assert physical > logical > shop > 0


# -- physical --------------------------------------------------------------------------


def test_physical_backup_restores_every_table(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    source = mariadb.access()
    before = fingerprint("MariaDB", source)
    started = datetime.now(UTC)
    backup = take(tmp_path, source, PHYSICAL)
    result = backup.result
    assert result is not None
    assert backup.names() == {
        "data.xbstream.zst",
        "xtrabackup_checkpoints.zst",
        "xtrabackup_info.zst",
    }
    assert result.engine_version == mariadb.version()
    assert set(SAMPLE) <= set(result.databases)
    assert set(result.consistent_position) == {"binlog_file", "binlog_pos", "gtid"}
    assert result.consistent_position["binlog_file"].startswith("binlog.")
    assert int(result.consistent_position["binlog_pos"]) > 0
    assert result.extra["backup_type"] == "full-backuped"
    assert int(result.extra["to_lsn"]) > int(result.extra["from_lsn"]) == 0
    assert result.consistent_time is not None
    assert started <= result.consistent_time <= datetime.now(UTC)
    assert "mariadb-backup" in result.tool_versions
    assert backup.phases[0] == "Preparing"
    raw = backup.manifest.object("data.xbstream.zst").raw_size
    assert 0.5 < raw / ENGINE.expected_bytes(source, PHYSICAL) < 2

    target = restore_physical(backup, server_factory)
    assert fingerprint("MariaDB", target.access()) == before
    assert user_databases(target.access()) == user_databases(source)


def test_physical_restore_refuses_a_chain(tmp_path: Path, mariadb: LocalServer) -> None:
    backup = take(tmp_path, mariadb.access(), PHYSICAL)
    with pytest.raises(EngineError, match="incremental"):
        ENGINE.restore_physical(backup.manifest, backup.reader(), tmp_path / "d", [backup.manifest])


def test_physical_corrupt_object_fails_restore(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    backup = take(tmp_path, mariadb.access(), PHYSICAL)
    flip_byte(backup.storage.path("set/data.xbstream.zst"))
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
    # the tool itself, without the engine's probe in front of it
    with pytest.raises(ToolFailed, match=r"^mariadb-backup exited with 1: .*Access denied"):
        mariadb_physical.backup_physical(access, PHYSICAL, sink, lambda _: None)


def test_physical_killed_tool_is_a_failure(tmp_path: Path, mariadb: LocalServer) -> None:
    sink = KillingSink(SetWriter(LocalStorage(tmp_path), "set"), "mariadb-backup", 1 << 20)
    with pytest.raises(ToolFailed, match="mariadb-backup exited with -9"):
        ENGINE.backup(mariadb.access(), PHYSICAL, sink, lambda _: None)
    assert sink.killed


# -- logical ---------------------------------------------------------------------------


def test_logical_instance_backup_restores_every_table(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    source = mariadb.access()
    before = fingerprint("MariaDB", source)
    started = datetime.now(UTC)
    backup = take(tmp_path, source, LOGICAL)
    result = backup.result
    assert result is not None
    assert backup.names() == {"dump.sql.zst"}
    assert result.consistent_time is not None
    assert started <= result.consistent_time <= datetime.now(UTC)
    assert backup.phases == ["Preparing", "Uploading", "Checking"]
    assert set(SAMPLE) <= set(result.databases)
    assert set(result.consistent_position) == {"binlog_file", "binlog_pos", "gtid"}
    assert result.extra == {}
    assert "mariadb-dump" in result.tool_versions

    target = restore_logical(backup, server_factory)
    assert fingerprint("MariaDB", target.access()) == before
    assert user_databases(target.access()) == user_databases(source)


def test_logical_db_backup_holds_only_its_databases(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    source = mariadb.access()
    plan = BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))
    backup = take(tmp_path, source, plan)
    assert backup.result is not None and backup.result.databases == ["shop"]
    target = restore_logical(backup, server_factory)
    assert user_databases(target.access()) == {"shop"}
    assert fingerprint("MariaDB", target.access()) == fingerprint("MariaDB", source, ["shop"])


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


def test_logical_corrupt_object_fails_restore(
    tmp_path: Path, mariadb: LocalServer, server_factory: ServerFactory
) -> None:
    backup = take(tmp_path, mariadb.access(), LOGICAL)
    flip_byte(backup.storage.path("set/dump.sql.zst"))
    target = server_factory("MariaDB", initialize=True)
    target.start()
    with pytest.raises(ChecksumMismatch, match=r"dump\.sql"):
        ENGINE.restore_logical(backup.manifest, backup.reader(), target.access())


def test_logical_wrong_password_names_access_denied(tmp_path: Path, mariadb: LocalServer) -> None:
    access = with_password(mariadb.access(), "wrong")
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(ServerUnavailable, match="Access denied"):
        ENGINE.backup(access, LOGICAL, sink, lambda _: None)
    with pytest.raises(ToolFailed, match=r"^mariadb-dump exited with 2: .*Access denied"):
        mariadb_logical.backup_logical(access, (), sink, log_bin=True, gtid=True)


def test_logical_killed_tool_is_a_failure(tmp_path: Path, mariadb: LocalServer) -> None:
    sink = KillingSink(SetWriter(LocalStorage(tmp_path), "set"), "mariadb-dump", 4096)
    with pytest.raises(ToolFailed, match="mariadb-dump exited with -9"):
        ENGINE.backup(mariadb.access(), LOGICAL, sink, lambda _: None)
    assert sink.killed


# -- consistency under load ------------------------------------------------------------

LOAD_TABLE = "load_writes"


def load_rows(statements: int) -> list[tuple[int, int, str]]:
    """``load_writes`` after the first ``statements`` statements of ``write_load``: three
    inserts, then an update of the last three rows, and again."""
    rows: list[list[Any]] = []
    for k in range(1, statements + 1):
        if k % 4:
            rows.append([len(rows) + 1, k, f"row {k} \u2713"])
        else:
            for row in rows[-3:]:
                row[1] += 1
    return [(r[0], r[1], r[2]) for r in rows]


def query(access: ServerAccess, sql: str) -> list[tuple[Any, ...]]:
    with (
        pymysql.connect(
            host=access.host,
            port=access.port,
            user=access.user,
            password=access.password,
            charset="utf8mb4",
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(sql)
        return list(cur.fetchall())


def gtid_seq(gtid: str) -> int:
    """The sequence number of a single-domain GTID position (``0-1-42`` -> 42)."""
    (only,) = gtid.split(",")
    return int(only.rsplit("-", 1)[1])


@pytest.mark.parametrize("method", [BackupMethod.PHYSICAL, BackupMethod.LOGICAL])
def test_backup_under_load_restores_the_recorded_point(
    method: BackupMethod, tmp_path: Path, server_factory: ServerFactory
) -> None:
    """While ``write_load`` commits statement after statement, the restored load table
    must be exactly the writer's history up to the GTID the backup recorded, and the
    recorded binlog file/position must name that same GTID."""
    source = server_factory("MariaDB")
    source.start()
    access = source.access()
    load_sample("MariaDB", access, rows=200, databases=("shop",))
    static = fingerprint("MariaDB", access)
    start_seq = gtid_seq(query(access, "SELECT @@gtid_binlog_pos")[0][0])
    stop = threading.Event()
    writer = threading.Thread(target=write_load, args=("MariaDB", access, "shop", stop))
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while gtid_seq(query(access, "SELECT @@gtid_binlog_pos")[0][0]) < start_seq + 50:
            assert time.monotonic() < deadline and writer.is_alive()
            time.sleep(0.02)
        backup = take(tmp_path, access, BackupPlan(method))
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    result = backup.result
    assert result is not None
    position = result.consistent_position
    # one GTID for CREATE TABLE, then one per statement
    applied = gtid_seq(position["gtid"]) - start_seq - 1
    total = gtid_seq(query(access, "SELECT @@gtid_binlog_pos")[0][0]) - start_seq - 1
    assert 50 <= applied < total
    (named,) = query(
        access,
        f"SELECT BINLOG_GTID_POS('{position['binlog_file']}', {int(position['binlog_pos'])})",
    )[0]
    assert named == position["gtid"]

    if method == BackupMethod.PHYSICAL:
        target = restore_physical(backup, server_factory)
    else:
        target = restore_logical(backup, server_factory)
    restored = query(
        target.access(), f"SELECT id, counter, payload FROM shop.{LOAD_TABLE} ORDER BY id"
    )
    assert [tuple(r) for r in restored] == load_rows(applied)
    after = fingerprint("MariaDB", target.access())
    del after[f"shop.{LOAD_TABLE}"]
    assert after == static


# -- the dump section filter -----------------------------------------------------------

_DUMP = b"""/*M!999999\\- enable the sandbox mode */
SET NAMES utf8mb4;
--
-- Current Database: `a`
--

CREATE DATABASE `a`;
USE `a`;
INSERT INTO t VALUES (1);
DELIMITER ;;
CREATE PROCEDURE p()
BEGIN
-- Current Database: `b`
SELECT 1;
END ;;
DELIMITER ;
--
-- Current Database: `b`
--

CREATE DATABASE `b`;
USE `b`;
INSERT INTO t VALUES (2);
--
-- Current Database: `we``ird`
--

USE `we``ird`;
"""


def filtered(databases: tuple[str, ...]) -> tuple[bytes, set[str]]:
    sections = SectionFilter(io.BufferedReader(io.BytesIO(_DUMP)), databases)
    return b"".join(sections.chunks()), sections.missing()


def test_section_filter_keeps_header_and_chosen_sections() -> None:
    out, missing = filtered(("b",))
    assert missing == set()
    assert out.startswith(b"/*M!999999")
    assert b"USE `b`;\nINSERT INTO t VALUES (2);" in out
    assert b"USE `a`" not in out and b"PROCEDURE" not in out and b"we``ird" not in out


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


# -- parsing the tools' own words ------------------------------------------------------


def test_dump_args_without_binary_log_record_no_position() -> None:
    args = dump_args("mariadb-dump", "/o.cnf", (), log_bin=False, gtid=True)
    assert args[1] == "--defaults-extra-file=/o.cnf"
    assert "--single-transaction" in args
    assert not any(a.startswith(("--master-data", "--gtid")) for a in args)
    assert args[-2:] == ["--all-databases", "--ignore-database=mysql"]
    chosen = dump_args("mariadb-dump", "/o.cnf", ("a", "b"), log_bin=True, gtid=False)
    assert "--master-data=2" in chosen and "--gtid" not in chosen
    assert chosen[-3:] == ["--databases", "a", "b"]


def test_position_of_a_dump_without_binary_log() -> None:
    scanner = DumpScanner(io.BytesIO(b"-- MariaDB dump\n" + _DUMP + b"\n-- Dump completed on x\n"))
    assert scanner.read() and scanner.read() == b""
    assert scanner.completed
    assert scanner.position() == {}


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


def test_physical_restore_needs_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "ibdata1").write_bytes(b"x")
    manifest = Manifest(
        "i", "MariaDB", "10.11.19", "Physical", "FullBackup", "instance", [], [], "", ""
    )
    reader = SetReader(LocalStorage(tmp_path / "s"), "set", manifest)
    with pytest.raises(EngineError, match="empty"):
        ENGINE.restore_physical(manifest, reader, tmp_path, [])
