"""The in-memory engine: its sets are real objects a restore reads back (through the real
set writer and reader), and its steering (failure, gate) behaves as tests rely on."""

from __future__ import annotations

import threading
from pathlib import Path

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
    StoredSet,
    ToolFailed,
    UnsupportedPlan,
)
from rdsbackup.engines.memory import DATA_FILE, MemoryEngine, MemoryServer
from rdsbackup.manifest import Manifest
from rdsbackup.storage.memory import MemoryStorage
from rdsbackup.storage.streams import SetReader, SetWriter


def shop() -> MemoryServer:
    server = MemoryServer()
    server.create_database("shop", {"orders": [[1, "pen", 2.5], [2, "ink", None]]})
    server.create_database("crm", {"contacts": [[1, "Ada"]], "notes": [[1, "é ✓ \u0001"]]})
    return server


class Rig:
    def __init__(self) -> None:
        self.engine = MemoryEngine()
        self.storage = MemoryStorage()
        self.count = 0

    def backup(
        self, access: ServerAccess, plan: BackupPlan, phases: list[str] | None = None
    ) -> StoredSet:
        self.count += 1
        writer = SetWriter(self.storage, f"i/{self.count}/")
        result = self.engine.backup(access, plan, writer, ([] if phases is None else phases).append)
        manifest = _manifest(plan, result, writer)
        return StoredSet(manifest, SetReader(self.storage, writer.prefix, manifest))


def _manifest(plan: BackupPlan, result: BackupResult, writer: SetWriter) -> Manifest:
    return Manifest(
        instance_id="i",
        engine="MariaDB",
        engine_version=result.engine_version,
        method=plan.method.value,
        kind=plan.kind.value,
        strategy=plan.strategy.value,
        databases=result.databases,
        objects=sorted(writer.objects, key=lambda o: o.name),
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        extra=result.extra,
        compression={"algorithm": "zstd", "level": "1"},
    )


def test_a_logical_set_loads_the_data_into_another_server() -> None:
    rig, source = Rig(), shop()
    stored = rig.backup(rig.engine.serve(source), BackupPlan(BackupMethod.LOGICAL))
    assert stored.manifest.databases == ["crm", "shop"]
    target = MemoryServer()
    target.create_database("shop", {"stale": [[0]]})
    rig.engine.restore_logical(stored.manifest, stored.source, rig.engine.serve(target))
    assert target.contents() == source.contents()

    only = MemoryServer()
    rig.engine.restore_logical(stored.manifest, stored.source, rig.engine.serve(only), ("crm",))
    assert only.contents() == {"crm": source.contents()["crm"]}


def test_a_physical_chain_restores_the_last_state_including_drops(tmp_path: Path) -> None:
    rig, source = Rig(), shop()
    access = rig.engine.serve(source)
    full = rig.backup(access, BackupPlan(BackupMethod.PHYSICAL))
    source.insert("shop", "orders", [3, "nib", 1.0])
    source.drop_table("crm", "notes")
    plan = BackupPlan(BackupMethod.PHYSICAL, kind=BackupKind.INCREMENTAL, parent=full.manifest)
    rig.engine.check_plan(plan, access)
    inc = rig.backup(access, plan)
    assert inc.manifest.extra["from_lsn"] == full.manifest.extra["to_lsn"]
    assert [o.name for o in inc.manifest.objects] == ["incremental.json.zst"]

    rig.engine.restore_physical(inc.manifest, inc.source, tmp_path / "inc", [full])
    assert MemoryServer.load(tmp_path / "inc").contents() == source.contents()
    rig.engine.restore_physical(full.manifest, full.source, tmp_path / "full", [])
    assert MemoryServer.load(tmp_path / "full").contents() == shop().contents()
    assert (tmp_path / "full" / DATA_FILE).is_file()


def test_fingerprints_are_those_of_the_data_backed_up() -> None:
    rig, source = Rig(), shop()
    plan = BackupPlan(BackupMethod.SNAPSHOT, fingerprint=True)
    writer = SetWriter(rig.storage, "i/1/")
    result = rig.engine.backup(rig.engine.serve(source), plan, writer, lambda _: None)
    assert result.fingerprints == source.fingerprints()
    assert result.fingerprints is not None and result.fingerprints["shop.orders"][0] == 2


def test_expected_bytes_is_what_the_backup_streams() -> None:
    rig, source = Rig(), shop()
    access = rig.engine.serve(source)
    plan = BackupPlan(BackupMethod.LOGICAL, BackupStrategy.DB, databases=("shop",))
    expected = rig.engine.expected_bytes(access, plan)
    stored = rig.backup(access, plan)
    assert expected == sum(o.raw_size for o in stored.manifest.objects) > 0


@pytest.mark.parametrize(
    ("plan", "what"),
    [
        (BackupPlan(BackupMethod.SNAPSHOT, BackupStrategy.DB, databases=("shop",)), "strategy"),
        (BackupPlan(BackupMethod.LOGICAL, kind=BackupKind.INCREMENTAL), "kind"),
    ],
)
def test_plans_it_cannot_run_are_refused(plan: BackupPlan, what: str) -> None:
    engine = MemoryEngine()
    with pytest.raises(UnsupportedPlan) as e:
        engine.check_plan(plan, engine.serve(shop()))
    assert e.value.what == what


def test_a_server_that_is_down_or_refuses_the_password_is_an_engine_error() -> None:
    engine, server = MemoryEngine(), shop()
    access = engine.serve(server)
    assert engine.probe(access).databases[0].name == "crm"
    server.available = False
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{access.port}"):
        engine.probe(access)
    server.available = True
    wrong = ServerAccess(access.host, access.port, access.user, "wrong")
    with pytest.raises(EngineError, match="access denied"):
        engine.probe(wrong)


def test_a_failed_backup_leaves_no_object_behind() -> None:
    rig, source = Rig(), shop()
    source.fail_next_backup("disk I/O error")
    with pytest.raises(ToolFailed, match="disk I/O error"):
        rig.backup(rig.engine.serve(source), BackupPlan(BackupMethod.PHYSICAL))
    assert list(rig.storage.list("i/")) == [] and rig.storage.writing() == []
    rig.backup(rig.engine.serve(source), BackupPlan(BackupMethod.PHYSICAL))  # only the next one


def test_a_blocked_backup_holds_its_object_invisible_until_released() -> None:
    rig, source = Rig(), shop()
    access = rig.engine.serve(source)
    gate = source.block_next_backup()
    phases: list[str] = []
    done: list[StoredSet] = []
    worker = threading.Thread(
        target=lambda: done.append(rig.backup(access, BackupPlan(BackupMethod.PHYSICAL), phases))
    )
    worker.start()
    try:
        assert gate.wait_reached()
        assert rig.storage.writing() == ["i/1/datadir.json.zst"]
        assert list(rig.storage.list("i/")) == []
        assert phases == ["Preparing", "Uploading"]
    finally:
        gate.release()
        worker.join(10)
    assert list(rig.storage.list("i/")) == ["i/1/datadir.json.zst"] and done


def test_a_read_only_server_refuses_writes_and_restores() -> None:
    rig, source = Rig(), shop()
    stored = rig.backup(rig.engine.serve(source), BackupPlan(BackupMethod.LOGICAL))
    target = MemoryServer(read_only=True)
    assert rig.engine.probe(rig.engine.serve(target)).read_only
    with pytest.raises(ToolFailed, match="read-only"):
        rig.engine.restore_logical(stored.manifest, stored.source, rig.engine.serve(target))
    with pytest.raises(ToolFailed, match="read-only"):
        target.insert("shop", "orders", [1])
