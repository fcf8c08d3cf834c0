"""The log store on a real catalog and local storage: a file arriving again is a
duplicate, with other content it is refused and the stored one is kept; a successor
that does not continue its predecessor records a Diverged gap; encrypted instances'
logs hold no plaintext; a fetch gives back the exact bytes and names a damaged file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import LogFileRecord, LogGap, policy_for
from rdsbackup.engines.logs import LINEAGE_END, LINEAGE_START, LogFile
from rdsbackup.jobs.logstore import LogOptions, LogRefused, LogStore
from rdsbackup.states import LogGapKind
from rdsbackup.storage.keys import Keyring
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import ChecksumMismatch
from tests.fixtures.backup_sets import add_instance
from tests.fixtures.log_files import binlog_name

INSTANCE = "rm-store1"
KEYS = Keyring({"k1": os.urandom(32)}, "k1")


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.upgrade()
    add_instance(catalog, INSTANCE)
    return LogStore(catalog, LocalStorage(tmp_path / "store"), LogOptions(keyring=KEYS))


def _file(tmp_path: Path, n: int, body: bytes, start: str = "", end: str = "") -> LogFile:
    path = tmp_path / "spool" / binlog_name(n)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(body)
    extra = {LINEAGE_START: start, LINEAGE_END: end} if start or end else {}
    return LogFile(binlog_name(n), path, sequence=n, extra=extra)


def _gaps(store: LogStore) -> list[tuple[str, str, str]]:
    with store.catalog.read() as s:
        return [(g.kind, g.after_file, g.before_file) for g in s.scalars(select(LogGap))]


def test_a_name_arriving_again_is_a_duplicate_or_refused(store: LogStore, tmp_path: Path) -> None:
    body = os.urandom(300_000)
    assert store.store(INSTANCE, _file(tmp_path, 1, body)).stored
    assert not store.store(INSTANCE, _file(tmp_path, 1, body)).stored  # sent again
    with pytest.raises(LogRefused, match="other content"):
        store.store(INSTANCE, _file(tmp_path, 1, os.urandom(300_000)))
    with store.catalog.read() as s:
        [record] = s.scalars(select(LogFileRecord))
        s.expunge(record)
    [back] = store.fetch([record], tmp_path / "back")
    assert back.path.read_bytes() == body  # the first one is kept


def test_a_successor_that_does_not_continue_records_a_diverged_gap(
    store: LogStore, tmp_path: Path
) -> None:
    store.store(INSTANCE, _file(tmp_path, 1, b"a", "0-1-0", "0-1-5"))
    assert store.store(INSTANCE, _file(tmp_path, 2, b"b", "0-1-5", "0-1-9")).gap is None
    result = store.store(INSTANCE, _file(tmp_path, 3, b"c", "", "0-1-2"))  # RESET MASTER
    assert result.stored and result.gap is not None
    store.store(INSTANCE, _file(tmp_path, 5, b"e", "0-1-2", "0-1-3"))  # file 4 is lost
    assert _gaps(store) == [
        (LogGapKind.DIVERGED, binlog_name(2), binlog_name(3)),
        (LogGapKind.MISSING, binlog_name(3), binlog_name(5)),
    ]


def test_encrypted_logs_hold_no_plaintext_and_damage_is_named(
    store: LogStore, tmp_path: Path
) -> None:
    with store.catalog.write() as s:
        policy = policy_for(s, INSTANCE)
        policy.backup_encryption = True
        s.add(policy)
    marker = b"plaintext-marker-" * 1000
    body = marker + os.urandom(100_000)
    store.store(INSTANCE, _file(tmp_path, 1, body))
    store.store(INSTANCE, _file(tmp_path, 2, marker))
    with store.catalog.read() as s:
        records = list(s.scalars(select(LogFileRecord).order_by(LogFileRecord.sequence)))
        s.expunge_all()
    assert all(r.encryption_key_id == "k1" for r in records)
    objects = [tmp_path / "store" / r.object_key for r in records]
    assert not any(b"plaintext-marker" in o.read_bytes() for o in objects)
    back = store.fetch(records, tmp_path / "back")
    assert [f.path.read_bytes() for f in back] == [body, marker]

    damaged = bytearray(objects[1].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    objects[1].write_bytes(bytes(damaged))
    with pytest.raises((ChecksumMismatch, LogRefused), match=binlog_name(2).replace(".", r"\.")):
        store.fetch(records, tmp_path / "again")
