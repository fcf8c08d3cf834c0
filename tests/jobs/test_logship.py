"""The log shipper against real servers: complete binlogs / WAL segments stored with
consecutive numbers; the streaming tool killed and the server restarted mid-stream
resume with no gap (both engines); MariaDB logs purged while nobody streamed and a
server whose binlog numbering restarted are reported as gaps (status Broken), never
skipped silently."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from rdsbackup.api.metrics import metrics_registry
from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import LogFileRecord, LogGap, LogStreamState, policy_for
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.engines.mariadb.binlog import BinlogStreamer
from rdsbackup.engines.postgres.wal import WalStreamer
from rdsbackup.engines.registry import default_registry
from rdsbackup.instances.inventory import Inventory
from rdsbackup.instances.servers import LocalServer
from rdsbackup.jobs.logchain import unbroken_from
from rdsbackup.jobs.logship import RESUME_TRIES, LogShipper, ShipOptions
from rdsbackup.jobs.logstore import HISTORY, LogOptions, LogStore
from rdsbackup.service.auth import AccountAdmin
from rdsbackup.service.metrics import CatalogCollector
from rdsbackup.states import LogGapKind
from rdsbackup.storage.local import LocalStorage
from rdsbackup.testing import register


class _Held:
    def hold(self) -> bool:
        return True

    def release(self) -> None:
        return None


@dataclass
class Shipping:
    catalog: Catalog
    shipper: LogShipper
    instance_id: str
    server: LocalServer
    engine: str
    closed: int = 0
    """PostgreSQL: the number of the newest segment the test closed."""

    @property
    def table(self) -> str:
        return "w.t" if self.engine == "MariaDB" else "t"

    def sql(self, *statements: str) -> None:
        a = self.server.access()
        if self.engine == "MariaDB":
            conn = pymysql.connect(
                host=a.host, port=a.port, user=a.user, password=a.password, autocommit=True
            )
            with conn, conn.cursor() as cur:
                for st in statements:
                    cur.execute(st)
            return
        with psycopg.connect(
            host=a.host, port=a.port, user=a.user, password=a.password, dbname="postgres"
        ) as pg:
            pg.autocommit = True
            for st in statements:
                pg.execute(st.encode())

    def write(self, n: int = 3) -> None:
        """n commits, each in a log file of its own (the file closed after it)."""
        for _ in range(n):
            self.sql(f"INSERT INTO {self.table} (at) VALUES ('{time.time()}')")
            if self.engine == "MariaDB":
                self.sql("FLUSH BINARY LOGS")
                continue
            a = self.server.access()
            with psycopg.connect(
                host=a.host, port=a.port, user=a.user, password=a.password, dbname="postgres"
            ) as pg:
                row = pg.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            self.closed = int(str(row[0])[8:16], 16) * 0x100 + int(str(row[0])[16:], 16)

    def until(self, done: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, self.state()
            self.shipper.tick()
            time.sleep(0.1)

    def stored(self) -> list[int]:
        with self.catalog.read() as s:
            return list(
                s.scalars(
                    select(LogFileRecord.sequence)
                    .where(
                        LogFileRecord.instance_id == self.instance_id,
                        LogFileRecord.kind != HISTORY,
                    )
                    .order_by(LogFileRecord.sequence)
                )
            )

    def server_current(self) -> int:
        a = self.server.access()
        conn = pymysql.connect(host=a.host, port=a.port, user=a.user, password=a.password)
        with conn, conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
            assert row is not None
            return int(str(row[0]).rsplit(".", 1)[1])

    def caught_up(self) -> bool:
        """Every file the test closed is stored."""
        stored = self.stored()
        if self.engine == "PostgreSQL":
            return bool(stored) and stored[-1] >= self.closed
        return bool(stored) and stored[-1] == self.server_current() - 1

    def gaps(self) -> list[LogGap]:
        with self.catalog.read() as s:
            found = list(s.scalars(select(LogGap).where(LogGap.instance_id == self.instance_id)))
            s.expunge_all()
            return found

    def state(self) -> tuple[str, str]:
        with self.catalog.read() as s:
            st = s.get(LogStreamState, self.instance_id)
            return ("", "") if st is None else (st.status, st.reason)


def _shipping(tmp_path: Path, server: LocalServer, engine: str = "MariaDB") -> Shipping:
    """``server`` started, with a table to write to, streamed by a shipper."""
    server.start()
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    box = SecretBox(Fernet.generate_key())
    registry = default_registry()
    inventory = Inventory(catalog, box, registry)
    account_id = AccountAdmin(catalog, box).ensure_account("a")
    instance_id = register(inventory, account_id, server.access(), engine)
    with catalog.write() as s:
        policy = policy_for(s, instance_id)
        policy.enable_backup_log = True
        s.add(policy)
    store = LogStore(catalog, LocalStorage(tmp_path / "store"), LogOptions())
    options = ShipOptions(tmp_path / "spool", switch_seconds=3600, restart_seconds=0.1)
    shipper = LogShipper(catalog, inventory, registry, store, lambda _: _Held(), options)
    ship = Shipping(catalog, shipper, instance_id, server, engine)
    if engine == "MariaDB":
        ship.sql("CREATE DATABASE w")
        ship.sql("CREATE TABLE w.t (id INT AUTO_INCREMENT PRIMARY KEY, at TEXT)")
    else:
        ship.sql("CREATE TABLE t (id serial PRIMARY KEY, at text)")
    return ship


def _consecutive(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.parametrize("engine", ["MariaDB", "PostgreSQL"])
def test_tool_and_server_killed_mid_stream_resume_with_no_gap(
    tmp_path: Path, server_factory: Callable[..., LocalServer], engine: str
) -> None:
    ship = _shipping(tmp_path, server_factory(engine), engine)
    try:
        ship.until(lambda: ship.state()[0] == "Streaming")  # a new slot starts from now
        ship.write()
        ship.until(ship.caught_up)
        assert ship.state() == ("Streaming", "")
        first = ship.stored()

        stream = ship.shipper._streams[ship.instance_id]
        assert isinstance(stream.streamer, BinlogStreamer | WalStreamer)
        assert stream.streamer._tool is not None
        os.killpg(stream.streamer._tool.proc.pid, signal.SIGKILL)
        ship.write()
        ship.until(lambda: ship.state()[0] == "Restarting")
        assert "exited with -9" in ship.state()[1]
        ship.until(ship.caught_up)

        ship.server.stop()  # the database server goes away mid-stream and comes back
        ship.until(lambda: ship.state()[0] == "Restarting")
        ship.server.start()
        ship.write()
        ship.until(ship.caught_up)
        assert ship.state() == ("Streaming", "")
        stored = ship.stored()
        assert len(stored) > len(first) and _consecutive(stored)
        assert ship.gaps() == []
    finally:
        ship.shipper.stop()
    with ship.catalog.read() as s:
        state = s.get_one(LogStreamState, ship.instance_id)
        assert state.restarts >= 2


def test_purged_and_renumbered_logs_are_reported_as_gaps(
    tmp_path: Path, server_factory: Callable[..., LocalServer]
) -> None:
    ship = _shipping(tmp_path, server_factory("MariaDB"))
    try:
        ship.write()
        ship.until(ship.caught_up)
        ship.shipper.stop()  # the service is away ...
        ship.write(4)
        current = ship.server_current()
        ship.sql(f"PURGE BINARY LOGS TO 'binlog.{current:06d}'")  # ... and the logs are purged
        ship.write()
        ship.until(lambda: bool(ship.gaps()), timeout=60)
        (gap,) = ship.gaps()
        stored = ship.stored()
        after, before = (int(name.rsplit(".", 1)[1]) for name in (gap.after_file, gap.before_file))
        assert after in stored and before in stored and before <= current
        missing = [n for n in range(stored[0], stored[-1] + 1) if n not in stored]
        assert missing == list(range(after + 1, before)) and missing, (stored, gap.reason)
        assert "never stored" in gap.reason
        assert ship.state()[0] == "Broken"
        with ship.catalog.read() as s:
            restarts = s.get_one(LogStreamState, ship.instance_id).restarts
        assert restarts >= RESUME_TRIES
        scrape = metrics_registry(CatalogCollector(ship.catalog))  # the alarm, as scraped
        labels = {"instance_id": ship.instance_id, "engine": "MariaDB"}
        broken = scrape.get_sample_value(
            "rdsbackup_log_backup_status", {**labels, "status": "Broken"}
        )
        streaming = scrape.get_sample_value(
            "rdsbackup_log_backup_status", {**labels, "status": "Streaming"}
        )
        assert (broken, streaming) == (1.0, 0.0)
        assert scrape.get_sample_value("rdsbackup_log_backup_gaps", labels) == 1.0
        assert scrape.get_sample_value("rdsbackup_log_files", labels) == len(stored)
        assert scrape.get_sample_value("rdsbackup_log_backup_restarts", labels) == restarts
        durable = scrape.get_sample_value(
            "rdsbackup_log_backup_last_durable_timestamp_seconds", labels
        )
        assert durable is not None and time.time() - 600 < durable <= time.time()

        ship.sql("RESET MASTER")  # numbering starts again: same names, other content
        ship.write()
        ship.until(lambda: len(ship.gaps()) >= 2, timeout=60)
        refused = ship.gaps()[1]  # one per refused file
        assert "other content" in refused.reason, refused.reason
        assert refused.kind == LogGapKind.REFUSED
        assert ship.state()[0] == "Broken"
        assert any(p.name.endswith(".rejected") for p in (tmp_path / "spool").rglob("*"))

        # once the new numbering passes the stored one, the next number is stored but
        # does not continue the old file (its GTID state): a gap no restore crosses
        newest = max(ship.stored())
        while ship.server_current() <= newest + 1:
            ship.write(1)
        ship.until(lambda: max(ship.stored()) > newest, timeout=60)
        diverged = [g for g in ship.gaps() if g.kind == LogGapKind.DIVERGED]
        assert [(g.after_file, g.before_file) for g in diverged] == [
            (f"binlog.{newest:06d}", f"binlog.{newest + 1:06d}")
        ], ship.gaps()
        with ship.catalog.read() as s:
            assert unbroken_from(s, ship.instance_id) == (1, newest + 1)
    finally:
        ship.shipper.stop()
