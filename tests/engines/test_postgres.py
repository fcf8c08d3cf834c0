"""The PostgreSQL engine against real servers: backups are taken from the ``postgres``
fixture (or a server of their own), stored in a LocalStorage, checked object by object
and restored into fresh servers, whose tables must match the source's.

This file: probe, plans, Physical sets, and every method under concurrent writes.
Logical sets: ``test_postgres_logical.py``; Snapshot sets: ``test_postgres_snapshot.py``;
failures part-way (server, tool, storage): ``test_postgres_faults.py``. The helpers
here are shared with those files."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google_crc32c
import psycopg
import pytest

from rdsbackup.engines.admin import admin_for
from rdsbackup.engines.base import (
    BackupKind,
    BackupMethod,
    BackupPlan,
    BackupResult,
    BackupStrategy,
    EngineError,
    ServerAccess,
    ServerUnavailable,
    StoredSet,
    ToolFailed,
    UnsupportedPlan,
)
from rdsbackup.engines.postgres import physical as postgres_physical
from rdsbackup.engines.postgres import restore_point as postgres_restore_point
from rdsbackup.engines.postgres.engine import PostgresEngine
from rdsbackup.instances.sample_data import load_sample
from rdsbackup.instances.servers import LocalServer
from rdsbackup.manifest import Manifest
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import ChecksumMismatch, SetReader, SetWriter
from tests.fixtures.dataset import fingerprint, write_load
from tests.fixtures.servers import ServerFactory

ENGINE = PostgresEngine()
PG = "PostgreSQL"
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
            engine=PG,
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
    target = server_factory(PG, initialize=False)
    ENGINE.restore_physical(backup.manifest, backup.reader(), target.data_dir, [])
    target.start()
    return target


def restore_logical(
    backup: Backup,
    server_factory: ServerFactory,
    databases: tuple[str, ...] = (),
    admin_password: str | None = None,
) -> LocalServer:
    if admin_password is None:
        target = server_factory(PG, initialize=True)
    else:
        target = server_factory(PG, initialize=True, admin_password=admin_password)
    target.start()
    ENGINE.restore_logical(backup.manifest, backup.reader(), target.access(), databases)
    return target


def user_databases(access: ServerAccess) -> set[str]:
    return {d.name for d in ENGINE.probe(access).databases}


def with_password(access: ServerAccess, password: str) -> ServerAccess:
    return ServerAccess(
        access.host, access.port, access.user, password, access.data_dir, access.os_user
    )


def connect(access: ServerAccess, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        dbname=dbname,
        autocommit=True,
    )


def query(access: ServerAccess, text: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
    with connect(access, dbname) as conn:
        return conn.execute(text.encode()).fetchall()


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- probe and plans -------------------------------------------------------------------


def test_probe_reads_version_databases_and_size(postgres: LocalServer) -> None:
    info = ENGINE.probe(postgres.access())
    assert info.version == postgres.version()
    by_name = {d.name: d for d in info.databases}
    assert set(by_name) == set(SAMPLE)
    assert by_name["shop"].character_set == "UTF8"
    assert by_name["shop"].collation == "C.UTF-8"
    assert info.data_bytes > 1_000_000
    assert info.read_only is False


def test_probe_wrong_password_names_the_reason(postgres: LocalServer) -> None:
    with pytest.raises(ServerUnavailable, match="password authentication failed"):
        ENGINE.probe(with_password(postgres.access(), "wrong"))


def test_probe_unreachable_server() -> None:
    with pytest.raises(ServerUnavailable, match="refused"):
        ENGINE.probe(ServerAccess("127.0.0.1", 1, "nobody", "x"))


@pytest.mark.parametrize(
    ("plan", "what"),
    [
        (BackupPlan(BackupMethod.PHYSICAL, kind=BackupKind.INCREMENTAL), "kind"),
        (BackupPlan(BackupMethod.LOGICAL, kind=BackupKind.INCREMENTAL), "kind"),
        (BackupPlan(BackupMethod.SNAPSHOT, kind=BackupKind.INCREMENTAL), "kind"),
        (BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB, databases=("shop",)), "strategy"),
        (BackupPlan(BackupMethod.SNAPSHOT, BackupStrategy.DB, databases=("shop",)), "strategy"),
        (BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB), "strategy"),
    ],
)
def test_check_plan_refuses_without_asking_the_server(plan: BackupPlan, what: str) -> None:
    with pytest.raises(UnsupportedPlan) as caught:
        ENGINE.check_plan(plan, ServerAccess("127.0.0.1", 1, "u", "p"))
    assert caught.value.what == what
    assert caught.value.reason
    if what == "kind":
        assert "PostgreSQL 15 base backups have no incremental form" in caught.value.reason


def test_backup_db_strategy_on_physical_names_the_alternative(
    tmp_path: Path, postgres: LocalServer
) -> None:
    plan = BackupPlan(BackupMethod.PHYSICAL, BackupStrategy.DB, databases=("shop",))
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(UnsupportedPlan, match="BackupMethod=Logical") as caught:
        ENGINE.backup(postgres.access(), plan, sink, lambda _: None)
    assert caught.value.what == "strategy"


def test_check_plan_against_the_server(postgres: LocalServer) -> None:
    access = postgres.access()
    ENGINE.check_plan(PHYSICAL, access)
    ENGINE.check_plan(LOGICAL, access)
    ENGINE.check_plan(
        BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",)), access
    )
    with pytest.raises(UnsupportedPlan, match="nope") as caught:
        ENGINE.check_plan(
            BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("nope",)), access
        )
    assert caught.value.what == "strategy"


def test_physical_refuses_user_tablespaces(server_factory: ServerFactory) -> None:
    server = server_factory(PG)
    server.start()
    location = server.base_dir / "ts"
    location.mkdir()
    os.chown(location, server.data_dir.stat().st_uid, server.data_dir.stat().st_gid)
    with connect(server.access()) as conn:
        conn.execute(f"CREATE TABLESPACE extra LOCATION '{location}'".encode())
    for plan in (PHYSICAL, BackupPlan(BackupMethod.SNAPSHOT)):
        with pytest.raises(UnsupportedPlan, match=r"tablespaces.*extra") as caught:
            ENGINE.check_plan(plan, server.access())
        assert caught.value.what == "method"
    ENGINE.check_plan(LOGICAL, server.access())


def test_expected_bytes(postgres: LocalServer) -> None:
    """Rough sizes of what the tools will write (compared with real sets below)."""
    access = postgres.access()
    physical = ENGINE.expected_bytes(access, PHYSICAL)
    logical = ENGINE.expected_bytes(access, LOGICAL)
    shop = ENGINE.expected_bytes(
        access, BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))
    )
    assert physical > 16 << 20  # the data and at least one WAL segment
    assert physical > logical > shop > 100_000


def near(raw: int, expected: int, tolerance: float) -> bool:
    return abs(raw - expected) <= tolerance * expected


# -- physical --------------------------------------------------------------------------


def test_physical_backup_restores_every_table(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    source = postgres.access()
    before = fingerprint(PG, source)
    assert len(before) == 12
    started = datetime.now(UTC)
    backup = take(tmp_path, source, PHYSICAL)
    result = backup.result
    assert result is not None
    assert backup.names() == {"base.tar.zst"}
    assert result.engine_version == postgres.version()
    assert result.databases == sorted(SAMPLE)
    position = result.consistent_position
    assert set(position) == {"start_lsn", "stop_lsn", "timeline"}
    assert lsn(position["start_lsn"]) < lsn(position["stop_lsn"])
    assert position["timeline"] == "1"
    assert result.consistent_time is not None
    assert started <= result.consistent_time <= datetime.now(UTC)
    assert result.tool_versions["pg_basebackup"].startswith("pg_basebackup (PostgreSQL)")
    assert backup.phases == ["Preparing", "Uploading"]
    raw = backup.manifest.object("base.tar.zst").raw_size
    assert near(raw, ENGINE.expected_bytes(source, PHYSICAL), 0.05)

    target = restore_physical(backup, server_factory)
    assert fingerprint(PG, target.access()) == before
    assert user_databases(target.access()) == set(SAMPLE)
    assert not (target.data_dir / "backup_manifest").exists()


def lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def test_physical_restore_refuses_a_chain_and_a_logical_set(
    tmp_path: Path, postgres: LocalServer
) -> None:
    backup = take(tmp_path, postgres.access(), PHYSICAL)
    with pytest.raises(EngineError, match="incremental"):
        ENGINE.restore_physical(
            backup.manifest,
            backup.reader(),
            tmp_path / "d",
            [StoredSet(backup.manifest, backup.reader())],
        )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "PG_VERSION").write_text("15\n")
    with pytest.raises(EngineError, match="not empty"):
        ENGINE.restore_physical(backup.manifest, backup.reader(), tmp_path / "full", [])


def test_physical_corrupt_object_fails_restore(
    tmp_path: Path, postgres: LocalServer, server_factory: ServerFactory
) -> None:
    backup = take(tmp_path, postgres.access(), PHYSICAL)
    flip_byte(backup.storage.path("set/base.tar.zst"))
    with pytest.raises(ChecksumMismatch, match=r"base\.tar"):
        backup.reader().verify_all()
    target = server_factory(PG, initialize=False)
    with pytest.raises(ChecksumMismatch, match=r"base\.tar"):
        ENGINE.restore_physical(backup.manifest, backup.reader(), target.data_dir, [])


def test_physical_restore_refuses_unsafe_tar_members(tmp_path: Path) -> None:
    for member in ("../escaped", "/etc/escaped"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(member)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        storage = LocalStorage(tmp_path / "storage")
        writer = SetWriter(storage, member.strip("/."))
        writer.put_bytes("base.tar", buffer.getvalue())
        manifest = Manifest(
            "i", PG, "15", "Physical", "FullBackup", "instance", [], writer.objects, "", ""
        )
        target = tmp_path / f"data-{member.strip('/.')}"
        with pytest.raises(EngineError, match="unsafe path"):
            ENGINE.restore_physical(
                manifest, SetReader(storage, writer.prefix, manifest), target, []
            )
    assert not (tmp_path / "escaped").exists()


def test_physical_wrong_password_names_the_reason(tmp_path: Path, postgres: LocalServer) -> None:
    access = with_password(postgres.access(), "wrong")
    sink = SetWriter(LocalStorage(tmp_path), "set")
    with pytest.raises(ServerUnavailable, match="password authentication failed"):
        ENGINE.backup(access, PHYSICAL, sink, lambda _: None)
    # the tool itself, without the engine's connection in front of it
    with pytest.raises(
        ToolFailed, match=r"^pg_basebackup exited with 1: .*password authentication failed"
    ):
        postgres_physical.base_backup(access, sink)


def test_wal_positions_from_verbose_output() -> None:
    lines = [
        "pg_basebackup: initiating base backup, waiting for checkpoint to complete",
        "pg_basebackup: write-ahead log start point: 0/2000028 on timeline 3",
        "pg_basebackup: write-ahead log end point: 0/2000100",
        "pg_basebackup: base backup completed",
    ]
    assert postgres_physical.wal_positions(lines) == {
        "start_lsn": "0/2000028",
        "stop_lsn": "0/2000100",
        "timeline": "3",
    }
    with pytest.raises(ToolFailed, match="start and end points"):
        postgres_physical.wal_positions(lines[:2])


# -- consistency under load ------------------------------------------------------------

ACCOUNTS = 10
OPENING = 1000


def transfers(access: ServerAccess, stop: threading.Event) -> int:
    """Move money between accounts, one transaction per transfer, each also logged in
    ``ledger``: every account's balance equals its opening balance plus its ledger."""
    rng, done = random.Random(7), 0
    with connect(access, "shop") as conn:
        conn.execute(b"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
        conn.execute(
            b"CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            b" src int NOT NULL, dst int NOT NULL, amount int NOT NULL)"
        )
        conn.execute(
            b"INSERT INTO accounts SELECT g, %s FROM generate_series(1, %s) g",
            (OPENING, ACCOUNTS),
        )
        while not stop.is_set():
            src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
            amount = rng.randrange(1, 50)
            with conn.transaction():
                conn.execute(
                    b"UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, src)
                )
                conn.execute(
                    b"INSERT INTO ledger (src, dst, amount) VALUES (%s, %s, %s)", (src, dst, amount)
                )
                conn.execute(
                    b"UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst)
                )
            done += 1
            time.sleep(0.001)
    return done


def shop_server(
    server_factory: ServerFactory, request: pytest.FixtureRequest, reflink: bool, rows: int
) -> LocalServer:
    """A started server with the sample ``shop`` database; on the reflink file system
    when ``reflink``."""
    root = request.getfixturevalue("reflink_root") if reflink else None
    source = server_factory(PG, root=root)
    source.start()
    load_sample(PG, source.access(), rows=rows, databases=("shop",))
    return source


@contextmanager
def two_writers(access: ServerAccess) -> Iterator[None]:
    """``write_load`` and ``transfers`` committing in ``shop``, from 50 transfers on."""
    stop = threading.Event()
    writers = [
        threading.Thread(target=write_load, args=(PG, access, "shop", stop)),
        threading.Thread(target=transfers, args=(access, stop)),
    ]
    for writer in writers:
        writer.start()
    try:
        deadline = time.monotonic() + 30
        while not ledger_rows(access) >= 50:
            assert time.monotonic() < deadline and all(w.is_alive() for w in writers)
            time.sleep(0.02)
        yield
    finally:
        stop.set()
        for writer in writers:
            writer.join()


def assert_ledger_matches_accounts(access: ServerAccess) -> int:
    mismatches = query(
        access,
        f"SELECT a.id FROM accounts a WHERE a.balance <> {OPENING}"
        " + (SELECT coalesce(sum(amount), 0) FROM ledger WHERE dst = a.id)"
        " - (SELECT coalesce(sum(amount), 0) FROM ledger WHERE src = a.id)",
        "shop",
    )
    assert mismatches == []
    assert query(access, "SELECT sum(balance) FROM accounts", "shop") == [(ACCOUNTS * OPENING,)]
    return int(query(access, "SELECT count(*) FROM ledger", "shop")[0][0])


def load_history() -> Iterator[list[tuple[int, int, str]]]:
    """``load_writes`` after each statement of ``write_load``: three inserts, then an
    update of the last three rows, and again."""
    rows: list[list[Any]] = []
    k = 0
    while True:
        k += 1
        if k % 4:
            rows.append([len(rows) + 1, k, f"row {k} \u2713"])
        else:
            for row in rows[-3:]:
                row[1] += 1
        yield [(r[0], r[1], r[2]) for r in rows]


def is_a_state_of_the_load(restored: list[tuple[int, int, str]]) -> bool:
    for state in load_history():
        if len(state) > len(restored):
            return False
        if state == restored:
            return True
    return False


@pytest.mark.parametrize(
    ("method", "reflink"),
    [
        (BackupMethod.PHYSICAL, False),
        (BackupMethod.LOGICAL, False),
        (BackupMethod.SNAPSHOT, False),
        (BackupMethod.SNAPSHOT, True),
    ],
    ids=["Physical", "Logical", "Snapshot", "Snapshot-reflink"],
)
def test_backup_under_load_restores_a_consistent_state(
    method: BackupMethod,
    reflink: bool,
    tmp_path: Path,
    server_factory: ServerFactory,
    request: pytest.FixtureRequest,
) -> None:
    """While ``write_load`` and a transfer writer commit, the restored copy must hold
    the ledger invariant, a prefix of the load writer's history and of the source's
    ledger, at least what was committed when the backup started and at most what was
    committed when it ended; every other table must match the source. ``reflink``: the
    server lives on a file system that makes clones, which the Snapshot takes."""
    source = shop_server(server_factory, request, reflink, rows=200)
    access = source.access()
    static = fingerprint(PG, access)
    with two_writers(access):
        at_start = ledger_rows(access)
        backup = take(tmp_path, access, BackupPlan(method))
        at_end = ledger_rows(access)
        time.sleep(0.2)
    assert backup.result is not None
    assert at_end > at_start  # the writers did commit while the backup ran
    if method == BackupMethod.SNAPSHOT:
        extra = backup.result.extra
        assert extra["copy"] == ("reflink" if reflink else "stream")
        assert reflink == (int(extra.get("cloned_bytes", 0)) > 0)
        assert list(source.base_dir.glob(".rdsbackup-clone-*")) == []
    if method == BackupMethod.LOGICAL:
        target = restore_logical(backup, server_factory)
    else:
        target = restore_physical(backup, server_factory)
    restored = target.access()
    transfers_kept = assert_ledger_matches_accounts(restored)
    assert at_start <= transfers_kept <= at_end
    ledger = "SELECT id, src, dst, amount FROM ledger ORDER BY id"
    assert query(restored, ledger, "shop") == query(access, ledger, "shop")[:transfers_kept]
    load = query(restored, "SELECT id, counter, payload FROM load_writes ORDER BY id", "shop")
    assert len(load) > 0 and is_a_state_of_the_load([tuple(r) for r in load])
    after = fingerprint(PG, restored)
    for table in ("shop.public.load_writes", "shop.public.accounts", "shop.public.ledger"):
        del after[table]
    assert after == static


def ledger_rows(access: ServerAccess) -> int:
    try:
        return int(query(access, "SELECT count(*) FROM ledger", "shop")[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


def test_file_crcs_agree_with_a_real_manifest(tmp_path: Path, postgres: LocalServer) -> None:
    """The CRC32Cs computed while extracting are spelled as pg_basebackup's manifest
    spells them, so a restore checks them itself (and pg_verifybackup skips that pass)."""
    backup = take(tmp_path, postgres.access(), PHYSICAL)
    crcs: dict[str, str] = {}
    manifest_text = ""
    with backup.reader().open("base.tar") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name == "backup_manifest":
                manifest_text = data.decode()
            elif member.isfile():
                crcs[member.name] = google_crc32c.value(data).to_bytes(4, "little").hex()
    assert postgres_physical.check_file_crcs(manifest_text, crcs) is True
    name = json.loads(manifest_text)["Files"][0]["Path"]
    with pytest.raises(EngineError, match="does not match"):
        postgres_physical.check_file_crcs(manifest_text, {**crcs, name: "00000000"})
    with pytest.raises(EngineError, match=r"not in base\.tar"):
        postgres_physical.check_file_crcs(
            manifest_text, {k: v for k, v in crcs.items() if k != name}
        )
    sha = manifest_text.replace('"CRC32C"', '"SHA256"')
    assert postgres_physical.check_file_crcs(sha, crcs) is False


def test_physical_restore_fails_when_a_file_differs_from_the_manifest(tmp_path: Path) -> None:
    """A base.tar whose stored checksum is right but whose file does not match the
    backup's own manifest (damaged before it was stored) is refused by name."""
    buffer = io.BytesIO()
    files = {"PG_VERSION": b"15\n", "global/pg_control": b"x" * 100}
    manifest = {
        "PostgreSQL-Backup-Manifest-Version": 1,
        "Files": [
            {
                "Path": path,
                "Size": len(data),
                "Checksum-Algorithm": "CRC32C",
                "Checksum": google_crc32c.value(data + b"!").to_bytes(4, "little").hex()
                if path == "PG_VERSION"
                else google_crc32c.value(data).to_bytes(4, "little").hex(),
            }
            for path, data in files.items()
        ],
    }
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in [*files.items(), ("backup_manifest", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    storage = LocalStorage(tmp_path / "storage")
    writer = SetWriter(storage, "set")
    writer.put_bytes("base.tar", buffer.getvalue())
    stored = Manifest(
        "i", PG, "15", "Physical", "FullBackup", "instance", [], writer.objects, "", ""
    )
    with pytest.raises(EngineError, match=r"PG_VERSION: CRC32C \w+ does not match"):
        ENGINE.restore_physical(
            stored, SetReader(storage, writer.prefix, stored), tmp_path / "d", []
        )


IMAGES = [
    (BackupMethod.PHYSICAL, False),
    (BackupMethod.SNAPSHOT, False),
    (BackupMethod.SNAPSHOT, True),
]


@pytest.mark.parametrize(
    ("method", "reflink"), IMAGES, ids=["Physical", "Snapshot", "Snapshot-reflink"]
)
def test_fingerprints_at_a_restore_point_are_the_restored_tables(
    method: BackupMethod,
    reflink: bool,
    tmp_path: Path,
    server_factory: ServerFactory,
    request: pytest.FixtureRequest,
) -> None:
    """Fingerprints taken at backup time, while two writers commit before, during and
    after the restore point the set's WAL is cut at, are exactly the restored tables'
    (an unlogged table's too: restored empty)."""
    source = shop_server(server_factory, request, reflink, rows=100)
    access = source.access()
    with connect(access, "shop") as conn:
        conn.execute(b"CREATE UNLOGGED TABLE scratch AS SELECT generate_series(1, 50) AS id")
    with two_writers(access):
        backup = take(tmp_path, access, BackupPlan(method, fingerprint=True))
        time.sleep(0.2)
    result = backup.result
    assert result is not None and result.fingerprints is not None
    position = result.consistent_position
    assert position["restore_point"].startswith("rdsbackup-")
    assert lsn(position["stop_lsn"]) < lsn(position["restore_point_lsn"])
    assert "fingerprints" not in result.extra  # not skipped
    assert 0 <= int(result.extra["write_lock_ms"]) < 10_000
    taken = result.fingerprints
    assert taken["shop.public.scratch"] == [0, "0"]
    assert 50 <= int(str(taken["shop.public.ledger"][0])) < ledger_rows(access)

    target = restore_physical(backup, server_factory)
    admin = admin_for(PG)
    assert admin.fingerprint(target.access(), admin.user_databases(target.access())) == taken
    assert_ledger_matches_accounts(target.access())
    # recovery ended where the set's WAL was cut: at the end of the restore point's record
    log = target.log_file.read_text()
    assert f"invalid record length at {position['restore_point_lsn']}: wanted 24, got 0" in log


@pytest.mark.parametrize("method", [BackupMethod.PHYSICAL, BackupMethod.SNAPSHOT])
def test_a_writer_that_holds_its_lock_leaves_the_set_without_fingerprints(
    method: BackupMethod,
    tmp_path: Path,
    postgres: LocalServer,
    server_factory: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The set is still taken, and restores, ending at its stop point as without
    fingerprints; the manifest says why there are none."""
    monkeypatch.setattr(postgres_restore_point, "LOCK_TIMEOUT", "1s")
    access = postgres.access()
    before = fingerprint(PG, access)
    with connect(access, "shop") as holder:  # an open transaction that wrote to a table
        holder.execute(b"BEGIN")
        holder.execute(b"UPDATE customers SET notes = notes WHERE id = 1")
        backup = take(tmp_path, access, BackupPlan(method, fingerprint=True))
        holder.execute(b"ROLLBACK")
    result = backup.result
    assert result is not None and result.fingerprints is None
    assert "restore_point" not in result.consistent_position
    assert result.extra["fingerprints"].startswith("not taken: ")
    assert "lock timeout" in result.extra["fingerprints"]
    target = restore_physical(backup, server_factory)
    assert fingerprint(PG, target.access()) == before


def test_a_replication_role_takes_physical_sets_without_fingerprints(
    tmp_path: Path, postgres: LocalServer
) -> None:
    """Enough for pg_basebackup, not for locking tables or reading WAL files: the set is
    taken as without fingerprints, and says why."""
    access = postgres.access()
    with connect(access) as conn:
        conn.execute(b"DROP ROLE IF EXISTS backup_only")
        conn.execute(b"CREATE ROLE backup_only LOGIN REPLICATION PASSWORD 'backup-pw'")
    limited = dataclasses.replace(access, user="backup_only", password="backup-pw")
    try:
        backup = take(tmp_path, limited, BackupPlan(BackupMethod.PHYSICAL, fingerprint=True))
    finally:
        with connect(access) as conn:
            conn.execute(b"DROP ROLE backup_only")
    result = backup.result
    assert result is not None and result.fingerprints is None
    assert "restore_point" not in result.consistent_position
    assert result.extra["fingerprints"].startswith("not taken: ")
    assert "permission denied" in result.extra["fingerprints"]
