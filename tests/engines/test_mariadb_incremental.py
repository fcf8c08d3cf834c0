"""Incremental Physical MariaDB sets: a full set and two incrementals taken while
writers run (and DDL happens between them), each point of the chain restored and
replayed to the source's final state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rdsbackup.engines.base import BackupKind, BackupPlan, EngineError
from tests.engines.test_mariadb_kit import (
    ENGINE,
    PHYSICAL,
    SAMPLE,
    Backup,
    assert_replays_to_source,
    query,
    restore_physical,
    source_server,
    take,
    writing,
)
from tests.fixtures.servers import ServerFactory


def on(parent: Backup) -> BackupPlan:
    return dataclasses.replace(PHYSICAL, kind=BackupKind.INCREMENTAL, parent=parent.manifest)


def test_full_and_two_incrementals_under_writes(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    source = source_server(server_factory)
    access = source.access()
    estimates: list[float] = []
    with writing(access):
        full = take(tmp_path, access, PHYSICAL, "full")
        query(access, "CREATE TABLE shop.extra (id INT PRIMARY KEY, v TEXT)")
        query(access, "INSERT INTO shop.extra VALUES (1, 'a'), (2, NULL)")
        query(access, "DROP TABLE analytics.reviews")
        estimates.append(ENGINE.expected_bytes(access, on(full)))
        inc1 = take(tmp_path, access, on(full), "inc1")
        query(access, "ALTER TABLE shop.extra ADD COLUMN w INT NOT NULL DEFAULT 7")
        query(access, "RENAME TABLE shop.extra TO shop.extra2")
        estimates.append(ENGINE.expected_bytes(access, on(inc1)))
        inc2 = take(tmp_path, access, on(inc1), "inc2")

    assert full.done.extra["backup_type"] == "full-backuped"
    for before, after in ((full, inc1), (inc1, inc2)):
        extra = after.done.extra
        assert extra["backup_type"] == "incremental"
        assert extra["from_lsn"] == before.done.extra["to_lsn"]
        assert int(extra["to_lsn"]) >= int(extra["from_lsn"])
        assert after.raw_bytes() < full.raw_bytes()
        assert {"binlog_file", "binlog_pos", "gtid"} <= set(after.done.consistent_position)
    for estimate, inc in zip(estimates, (inc1, inc2), strict=True):
        assert 0.3 < inc.raw_bytes() / estimate < 3

    last = restore_physical(inc2, server_factory, [full, inc1])
    assert_replays_to_source(inc2, source, last)
    middle = restore_physical(inc1, server_factory, [full])
    assert_replays_to_source(inc1, source, middle)
    for stored in (full, inc1, inc2):
        stored.reader().verify_all()  # preparing worked on copies: the objects are intact

    broken = server_factory("MariaDB", initialize=False)
    elsewhere = {**inc2.manifest.extra, "from_lsn": "1"}
    gap = dataclasses.replace(inc2.manifest, extra=elsewhere)
    chain = [full.stored(), inc1.stored()]
    with pytest.raises(EngineError, match=r"set 3 of the chain starts at LSN 1 but set 2 ends"):
        ENGINE.restore_physical(gap, inc2.reader(), broken.data_dir, chain)
    with pytest.raises(EngineError, match="with the sets it builds on"):
        ENGINE.restore_physical(inc1.manifest, inc1.reader(), broken.data_dir, [])
    with pytest.raises(EngineError, match="must start with a full instance set"):
        ENGINE.restore_physical(inc2.manifest, inc2.reader(), broken.data_dir, [inc1.stored()])
    assert not any(broken.data_dir.iterdir())
    assert set(SAMPLE) <= {d.name for d in ENGINE.probe(last.access()).databases}
