"""MariaDB binlog streaming against a fresh real server: complete files reported with
consecutive sequences and parsed positions, a killed tool reported, resume without gap."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import UTC, timedelta
from pathlib import Path

from rdsbackup.engines.logs import LINEAGE_END, LINEAGE_START, LogFile, LogStreamer, RecoveryTarget
from rdsbackup.engines.mariadb.binlog import BinlogStreamer
from tests.engines.test_mariadb_kit import ENGINE, PHYSICAL, query, restore_physical, take
from tests.fixtures.servers import ServerFactory


def _wait_files(streamer: LogStreamer, count: int) -> list[LogFile]:
    found: list[LogFile] = []
    deadline = time.monotonic() + 20
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} files complete"
        found += streamer.completed()
        time.sleep(0.1)
    return found


def test_stream_switch_kill_and_resume(tmp_path: Path, server_factory: ServerFactory) -> None:
    server = server_factory("MariaDB")
    server.start()
    access = server.access()
    ENGINE.check_log_source(access)
    query(access, "CREATE DATABASE w")
    query(access, "CREATE TABLE w.t (id INT PRIMARY KEY AUTO_INCREMENT, at DATETIME(6))")
    spool = tmp_path / "spool"
    spool.mkdir()
    streamer = ENGINE.log_streamer(access, spool, None)
    assert isinstance(streamer, BinlogStreamer)
    streamer.start()
    for _ in range(2):
        query(access, "INSERT INTO w.t (at) VALUES (NOW(6))")
        ENGINE.switch_log(access)
    files = _wait_files(streamer, 2)
    seqs = [f.sequence for f in files]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert all(f.start_position.endswith(":4") for f in files)
    assert files[-1].last_time is not None
    assert int(files[-1].end_position.rsplit(":", 1)[1]) == files[-1].path.stat().st_size
    # each file starts from the GTID state the one before left; the last one's end state
    # is the server's (nothing was written since)
    for older, newer in itertools.pairwise(files):
        assert newer.extra[LINEAGE_START] == older.extra[LINEAGE_END]
    assert files[-1].extra[LINEAGE_START] != files[-1].extra[LINEAGE_END]  # one insert
    [(state,)] = query(access, "SELECT @@gtid_binlog_state")
    assert files[-1].extra[LINEAGE_END] == ",".join(sorted(str(state).split(",")))
    assert streamer.exited() is None
    assert streamer._tool is not None
    os.killpg(streamer._tool.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (why := streamer.exited()) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "exited with -9" in why
    for f in files:
        f.path.unlink()
    query(access, "INSERT INTO w.t (at) VALUES (NOW(6))")
    ENGINE.switch_log(access)
    again = ENGINE.log_streamer(access, spool, files[-1])
    again.start()
    try:
        more = _wait_files(again, 1)
    finally:
        again.stop()
    assert more[0].sequence == files[-1].sequence + 1


def test_point_in_time_restore_holds_rows_before_the_target(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("MariaDB")
    server.start()
    access = server.access()
    query(access, "CREATE DATABASE w")
    query(access, "CREATE TABLE w.t (id INT PRIMARY KEY AUTO_INCREMENT, at DATETIME(6))")
    spool = tmp_path / "spool"
    spool.mkdir()
    streamer = ENGINE.log_streamer(access, spool, None)
    streamer.start()
    try:
        query(access, "INSERT INTO w.t (at) VALUES (UTC_TIMESTAMP(6))")
        backup = take(tmp_path, access, PHYSICAL)
        for _ in range(12):
            query(access, "INSERT INTO w.t (at) VALUES (UTC_TIMESTAMP(6))")
            time.sleep(0.25)
        ENGINE.switch_log(access)
        current = int(str(query(access, "SHOW MASTER STATUS")[0][0]).rsplit(".", 1)[1])
        files: list[LogFile] = []
        deadline = time.monotonic() + 20
        while not files or files[-1].sequence < current - 1:
            assert time.monotonic() < deadline
            files += streamer.completed()
            time.sleep(0.1)
    finally:
        streamer.stop()
    times = [r[0] for r in query(access, "SELECT at FROM w.t ORDER BY id")]
    cut = times[len(times) // 2].replace(microsecond=0, tzinfo=UTC) + timedelta(seconds=1)
    target = restore_physical(backup, server_factory)
    recovery = RecoveryTarget(cut, spool, tuple(files), backup.done.consistent_position)
    ENGINE.finish_recovery(target.access(), recovery)
    want = query(
        access, "SELECT id FROM w.t WHERE at < %s ORDER BY id", (cut.replace(tzinfo=None),)
    )
    got = query(target.access(), "SELECT id FROM w.t ORDER BY id")
    assert 1 < len(got) < len(times)
    assert got == want


def test_switch_closes_the_binlog_only_when_it_holds_a_transaction(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("MariaDB")
    server.start()
    access = server.access()

    def current() -> str:
        return str(query(access, "SHOW MASTER STATUS")[0][0])

    query(access, "CREATE DATABASE w")
    ENGINE.switch_log(access)
    idle = current()
    for _ in range(3):  # an idle server keeps its file: no empty binlog per switch
        ENGINE.switch_log(access)
    assert current() == idle
    query(access, "CREATE TABLE w.t (id INT PRIMARY KEY)")
    ENGINE.switch_log(access)
    assert current() != idle
