"""PostgreSQL WAL streaming against a fresh real server: pg_receivewal through its
replication slot, complete segments only, with consecutive numbers, the commit times
pg_waldump finds and the cluster's system identifier as their lineage; switching log
backups off drops the slot."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rdsbackup.engines.logs import LINEAGE_END, LINEAGE_START, LogFile, LogStreamer
from rdsbackup.engines.postgres.wal import slot_name
from tests.engines.test_postgres import ENGINE, PG, connect, query
from tests.fixtures.servers import ServerFactory


def _wait_segments(streamer: LogStreamer, count: int) -> list[LogFile]:
    found: list[LogFile] = []
    deadline = time.monotonic() + 60
    while len([f for f in found if not f.name.endswith(".history")]) < count:
        assert streamer.exited() is None, streamer.exited()
        assert time.monotonic() < deadline, f"only {len(found)} files complete"
        found += streamer.completed()
        time.sleep(0.1)
    return found


def test_segments_are_complete_consecutive_and_of_this_cluster(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory(PG)
    server.start()
    access = server.access()
    ENGINE.check_log_source(access)
    with connect(access) as conn:
        conn.execute("CREATE TABLE t (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    spool = tmp_path / "spool"
    spool.mkdir()
    streamer = ENGINE.log_streamer(access, spool, None)
    streamer.start()
    deadline = time.monotonic() + 30
    while not any(p.name.endswith(".partial") for p in spool.iterdir()):  # connected
        assert streamer.exited() is None and time.monotonic() < deadline, streamer.exited()
        time.sleep(0.05)
    before = datetime.now(UTC) - timedelta(seconds=1)
    try:
        for _ in range(3):
            with connect(access) as conn:
                conn.execute("INSERT INTO t DEFAULT VALUES")
            ENGINE.switch_log(access)
        files = _wait_segments(streamer, 3)
    finally:
        streamer.stop()
    segments = [f for f in files if not f.name.endswith(".history")]
    seqs = [f.sequence for f in segments]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert not any(p.name.endswith(".partial") for p in (f.path for f in files))
    [(cluster,)] = query(access, "SELECT system_identifier::text FROM pg_control_system()")
    for f in segments:
        assert f.extra[LINEAGE_START] == f.extra[LINEAGE_END] == f"system_identifier={cluster}"
        assert f.path.stat().st_size == int(f.extra["wal_segment_size"])
    committed = [f for f in segments if f.last_time is not None]
    assert committed, [f.name for f in segments]
    for f in committed:  # the first segment also holds the server's own earlier commits
        assert f.first_time is not None and f.last_time is not None
        assert f.first_time <= f.last_time <= datetime.now(UTC)
    assert committed[-1].last_time is not None and committed[-1].last_time >= before

    slots = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot_name(spool)}'"
    assert query(access, slots) == [(1,)]
    ENGINE.release_log_source(access, spool)
    assert query(access, slots) == [(0,)]
