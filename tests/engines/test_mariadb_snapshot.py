"""Snapshot MariaDB sets: the data directory at one instant inside BACKUP STAGE
BLOCK_COMMIT. Taken while writers commit and while a transaction that cannot commit
keeps its changes open, restored by crash recovery, replayed to the source's final
state; and the directory-image machinery on its own."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, cast

import pymysql
import pytest

from rdsbackup.engines.admin import admin_for
from rdsbackup.engines.base import EngineError, ServerAccess
from rdsbackup.engines.mariadb import snapshot as mariadb_snapshot
from rdsbackup.engines.mariadb.image import (
    CTIME_MARGIN_NS,
    DIGEST_BLOCK,
    DirectoryImage,
    IterStream,
)
from rdsbackup.manifest import Manifest
from rdsbackup.storage.base import StorageError
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader, SetWriter
from tests.engines.test_mariadb_kit import (
    ENGINE,
    SAMPLE,
    SNAPSHOT,
    ActingSink,
    assert_replays_to_source,
    query,
    restore_physical,
    source_server,
    take,
    writing,
)
from tests.fixtures.servers import ServerFactory


def _session(access: ServerAccess) -> Any:
    return pymysql.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        database="shop",
        autocommit=False,
    )


@pytest.fixture(params=["stream", "reflink", "stream-asked"])
def copy_mode(request: pytest.FixtureRequest) -> tuple[str, Path | None]:
    """How the image is taken, and the folder its server lives in: a streamed copy on
    the tests' usual file system, clones on one that makes them, or a streamed copy
    there too when the plan says ``reflink=False``."""
    if request.param == "stream":
        return "stream", None
    return request.param, cast(Path, request.getfixturevalue("reflink_root"))


def _stages(access: ServerAccess) -> list[Path]:
    assert access.data_dir is not None
    return list(access.data_dir.parent.glob(".rdsbackup-clone-*"))


def test_snapshot_under_writes_restores_to_its_position(
    tmp_path: Path, server_factory: ServerFactory, copy_mode: tuple[str, Path | None]
) -> None:
    mode, root = copy_mode
    source = source_server(server_factory, root=root)
    access = source.access()
    query(access, "CREATE TABLE shop.pending (id INT PRIMARY KEY, v VARCHAR(200))")
    open_trx = _session(access)
    with open_trx.cursor() as cur:  # changes no commit may keep while the lock is held
        rows = [(n, "x" * 150) for n in range(5000)]
        cur.executemany("INSERT INTO pending VALUES (%s, %s)", rows)
    plan = replace(SNAPSHOT, fingerprint=True, reflink=mode != "stream-asked")
    mode = mode.removesuffix("-asked")
    with writing(access):
        expected = ENGINE.expected_bytes(access, SNAPSHOT)
        backup = take(tmp_path, access, plan)
    open_trx.commit()
    open_trx.close()

    result = backup.done
    assert backup.names() == {"datadir.tar.zst", "datadir.json.zst"}
    assert set(result.consistent_position) == {"binlog_file", "binlog_pos", "gtid"}
    assert set(result.databases) == set(SAMPLE)
    figures = result.extra
    assert figures["copy"] == mode
    assert 0 < int(figures["lock_ms"]) <= int(figures["ddl_lock_ms"]) < 30_000
    assert int(figures["locked_rounds"]) >= 1
    if mode == "stream":
        assert int(figures["locked_bytes"]) < int(figures["copied_bytes"]) // 10
    else:  # every byte stored was read from a clone, after the lock
        assert int(figures["cloned_bytes"]) >= int(figures["copied_bytes"]) > 0
        assert _stages(access) == []
    assert 0.7 < backup.raw_bytes() / expected < 1.5
    with backup.reader().open("datadir.json") as f:
        files = json.load(f)["files"]
    assert "ib_logfile0" in files and "shop/pending.ibd" in files
    assert not [n for n in files if n.startswith(("binlog.", "ibtmp"))]

    target = restore_physical(backup, server_factory)
    assert query(target.access(), "SELECT COUNT(*) FROM shop.pending")[0][0] == 0
    # taken in a snapshot opened under the lock: what the restored image holds
    admin = admin_for("MariaDB")
    restored = admin.fingerprint(target.access(), admin.user_databases(target.access()))
    assert result.fingerprints == restored and result.fingerprints["shop.pending"][0] == 0
    assert_replays_to_source(backup, source, target)
    assert query(target.access(), "SELECT COUNT(*) FROM shop.pending")[0][0] == 5000


def test_snapshot_gives_up_on_a_directory_that_never_settles(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """A transaction that keeps writing (it cannot commit under the lock) moves InnoDB's
    LSN all the time: no streamed image is taken, and the lock is released. (Clones are
    quick enough to find an instant between two of its writes, and then settle.)"""
    source = source_server(server_factory)
    access = source.access()
    query(access, "CREATE TABLE shop.busy (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)")
    stop = threading.Event()

    def busy() -> None:
        with _session(access) as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO busy (v) VALUES (REPEAT('b', 500))")
            conn.rollback()

    writer = threading.Thread(target=busy)
    writer.start()
    sink = SetWriter(LocalStorage(tmp_path), "set")
    try:
        started = time.monotonic()
        with pytest.raises(EngineError, match=r"kept changing .* for 2 s"):
            mariadb_snapshot.backup_snapshot(access, sink, lock_limit=2)
        assert time.monotonic() - started < 60
        query(access, "SET SESSION lock_wait_timeout = 5")
        query(access, "INSERT INTO shop.busy (v) VALUES ('committed')")  # not blocked
    finally:
        stop.set()
        writer.join()
    assert query(access, "SELECT COUNT(*) FROM shop.busy")[0][0] == 1


def test_a_cloned_snapshot_that_cannot_be_stored_leaves_no_clone(
    tmp_path: Path, server_factory: ServerFactory, reflink_root: Path
) -> None:
    source = source_server(server_factory, root=reflink_root)
    access = source.access()
    seen: list[Path] = []
    sink = ActingSink(
        SetWriter(LocalStorage(tmp_path), "set"),
        lambda: seen.extend(_stages(access)),
        1 << 20,
        name="datadir.tar",
        fail=True,
    )
    with pytest.raises(StorageError, match=r"disk full while writing datadir\.tar"):
        mariadb_snapshot.backup_snapshot(access, cast(SetWriter, sink))
    assert len(seen) == 1  # the clones were being read when storage failed
    assert _stages(access) == []
    query(access, "CREATE TABLE shop.after_failure (id INT)")  # neither DDL nor commits wait
    query(access, "INSERT INTO shop.after_failure VALUES (1)")


def test_snapshot_refuses_tables_outside_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "shop").mkdir(parents=True)
    (data / "shop" / "far.isl").write_text("/elsewhere/far.ibd")
    access = ServerAccess("127.0.0.1", 1, "u", "p", data)
    with pytest.raises(EngineError, match=r"shop/far lives outside the data directory"):
        mariadb_snapshot.backup_snapshot(access, SetWriter(LocalStorage(tmp_path), "s"))


# -- the directory image ---------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _old_enough() -> None:
    time.sleep(CTIME_MARGIN_NS / 1e9 + 0.05)


def _store(tmp_path: Path, image: DirectoryImage, stream: Iterator[bytes]) -> SetReader:
    writer = SetWriter(LocalStorage(tmp_path / "storage"), "set")
    writer.put("datadir.tar", cast(BinaryIO, IterStream(stream)))
    listing = {"files": image.files(), "dirs": image.dirs(), "figures": {}}
    writer.put("datadir.json", io.BytesIO(json.dumps(listing).encode()))
    objects = list(writer.objects)
    manifest = Manifest(
        "i", "MariaDB", "x", "Snapshot", "FullBackup", "instance", [], objects, "", ""
    )
    return SetReader(writer.storage, "set", manifest)


def test_image_copies_again_what_changed_until_it_settles(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "db").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "ibdata1").write_bytes(os.urandom(70_000))
    (root / "db" / "t.ibd").write_bytes(os.urandom(5 * DIGEST_BLOCK))
    (root / "db" / "gone.ibd").write_bytes(b"doomed")
    (root / "binlog.000001").write_bytes(b"skipped")
    _old_enough()
    image = DirectoryImage(root, mariadb_snapshot.keep)
    first = list(image.copy(sorted(image.listing().files)))
    assert image.settled() is True

    with open(root / "db" / "t.ibd", "r+b") as f:  # one block changed, one added
        f.seek(2 * DIGEST_BLOCK + 10)
        f.write(b"changed")
        f.seek(0, os.SEEK_END)
        f.write(b"grown")
    os.truncate(root / "ibdata1", 30_000)
    (root / "db" / "gone.ibd").unlink()
    (root / "db" / "new.frm").write_bytes(b"new")
    _old_enough()
    assert image.pending(image.listing()) == ["db/new.frm", "db/t.ibd", "ibdata1"]
    assert image.settled() is False
    stored = image.bytes_copied
    second = list(image.copy(image.pending(image.listing())))
    changed = DIGEST_BLOCK + 5 + 3 + 30_000  # a block of t.ibd, its end, new.frm, ibdata1
    assert image.bytes_copied - stored == changed
    assert image.pending(image.listing(), lambda n: n == "ibdata1") == ["ibdata1"]
    assert image.settled() is True
    assert image.files() == {"db/new.frm": 3, "db/t.ibd": 5 * DIGEST_BLOCK + 5, "ibdata1": 30_000}
    assert image.dirs() == ["db", "empty"]

    reader = _store(tmp_path, image, chain(first, second, [image.end()]))
    restored = tmp_path / "restored"
    restored.mkdir()
    mariadb_snapshot.restore_snapshot(reader, restored)
    expected = _tree(root)
    del expected["binlog.000001"]
    assert _tree(restored) == expected
    assert (restored / "empty").is_dir()


def test_image_of_a_file_written_while_it_is_copied_is_not_settled(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "hot").write_bytes(bytes(3 << 20))
    _old_enough()
    image = DirectoryImage(root, mariadb_snapshot.keep)
    stream = image.copy(["hot"])
    next(stream)  # the header: the copy has started
    with open(root / "hot", "r+b") as f:
        f.write(b"changed")
    list(stream)
    assert image.settled() is False
    assert image.pending(image.listing()) == ["hot"]


def test_restore_rejects_unsafe_member_names(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    _old_enough()
    image = DirectoryImage(root, mariadb_snapshot.keep)
    assert image.settled()
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"!"))
    reader = _store(tmp_path, image, iter([evil.getvalue()]))
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(EngineError, match=r"unsafe name '\.\./evil'"):
        mariadb_snapshot.restore_snapshot(reader, target)
    assert not (tmp_path / "evil").exists()


def test_iter_stream_reads_across_chunks() -> None:
    stream = IterStream(iter([b"ab", b"", b"cde", b"f"]))
    assert stream.read1(1) == b"a"
    assert stream.read(3) == b"bcd"
    assert stream.read() == b"ef"
    assert stream.read1() == b""
