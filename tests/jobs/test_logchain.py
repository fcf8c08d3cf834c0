"""Which base set and log files reach a time, on a catalog of twelve days of binlogs:
the window runs from the oldest base set with unbroken logs to the newest commit; a
missing file, a successor that does not continue its predecessor (Diverged) and a base
set positioned in a file whose name was refused each stop a restore, with the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from rdsbackup.catalog.models import BackupSet, LogFileRecord, LogGap
from rdsbackup.engines.mariadb.engine import MariaDBEngine
from rdsbackup.jobs.logchain import NoRecovery, Window, plan, window
from rdsbackup.states import LogGapKind
from tests.fixtures.backup_sets import T0
from tests.fixtures.log_files import FILES, LOG_INSTANCE, LogRig, binlog_name, log_rig

BASE_LOG = MariaDBEngine().base_log


def _day(day: int, hours: int = 0) -> timedelta:
    return timedelta(days=day, hours=hours)


def _window(rig: LogRig) -> Window | None:
    with rig.catalog.read() as s:
        return window(s, LOG_INSTANCE, BASE_LOG)


def _plan(
    rig: LogRig, days: int, hours: int, backup_id: int | None = None
) -> tuple[int, list[int]]:
    with rig.catalog.read() as s:
        chosen = plan(s, LOG_INSTANCE, T0 + _day(days, hours), BASE_LOG, backup_id)
        return chosen.backup_id, [r.sequence for r in chosen.logs]


def _set_time(rig: LogRig, day: int) -> object:
    with rig.catalog.read() as s:
        return s.get_one(BackupSet, rig.sets[day]).consistent_time


def _gap(rig: LogRig, after: int, kind: LogGapKind) -> None:
    with rig.catalog.write() as s:
        s.add(
            LogGap(
                instance_id=LOG_INSTANCE,
                after_file=binlog_name(after),
                before_file=binlog_name(after + 1),
                kind=kind,
                reason=str(kind),
                detected_at=T0 + _day(12),
            )
        )


def test_the_newest_base_set_before_the_time_and_its_files_up_to_it(tmp_path: Path) -> None:
    rig = log_rig(tmp_path)
    assert _window(rig) == Window(
        T0 + timedelta(minutes=5), T0 + timedelta(hours=12 * (FILES - 1) + 11)
    )
    # day 7, 06:00: day 5's set (file 11) and the files to the one holding 06:00 (file 15)
    assert _plan(rig, 7, 6) == (rig.sets[5], [11, 12, 13, 14, 15])
    assert _plan(rig, 7, 6, rig.sets[0]) == (rig.sets[0], list(range(1, 16)))
    with pytest.raises(NoRecovery, match="newest stored log reaches"):
        _plan(rig, 13, 0)
    with pytest.raises(NoRecovery, match="no available backup set is a base set"):
        _plan(rig, 0, 0)


def test_a_missing_file_splits_the_window_and_no_restore_crosses_it(tmp_path: Path) -> None:
    rig = log_rig(tmp_path)
    with rig.catalog.write() as s:
        s.execute(delete(LogFileRecord).where(LogFileRecord.sequence == 15))
    found = _window(rig)
    assert found is not None and found.begin == _set_time(rig, 10)
    with pytest.raises(NoRecovery, match=r"gap after binlog\.000014"):
        _plan(rig, 8, 0)  # day 5's set would need file 15
    assert _plan(rig, 6, 0) == (rig.sets[5], [11, 12, 13])  # before the gap: still fine
    assert _plan(rig, 11, 0)[0] == rig.sets[10]


def test_a_diverged_successor_is_a_gap_though_its_number_follows(tmp_path: Path) -> None:
    rig = log_rig(tmp_path)
    _gap(rig, 18, LogGapKind.DIVERGED)  # file 19 does not continue file 18
    found = _window(rig)
    assert found is not None and found.begin == _set_time(rig, 10)
    with pytest.raises(NoRecovery, match=r"gap after binlog\.000018"):
        _plan(rig, 9, 12)
    assert _plan(rig, 10, 12) == (rig.sets[10], [21, 22])


def test_a_set_positioned_in_a_refused_name_after_it_was_stored_is_not_a_base(
    tmp_path: Path,
) -> None:
    rig = log_rig(tmp_path)
    # the server's history restarted: a new file 21 came and was refused, and a set was
    # taken in it on day 11 (after the stored file 21, of day 10, was stored)
    with rig.catalog.write() as s:
        s.add(
            LogGap(
                instance_id=LOG_INSTANCE,
                after_file=binlog_name(FILES),
                before_file=binlog_name(21),
                kind=LogGapKind.REFUSED,
                reason="other content",
                detected_at=T0 + _day(11, 1),
            )
        )
    newer = rig.add_base_set(11, 21)
    with pytest.raises(NoRecovery, match=r"wrote another binlog\.000021"):
        _plan(rig, 11, 6, newer)
    assert _plan(rig, 11, 6) == (rig.sets[10], [21, 22, 23])  # day 10's set, older, is sound
    found = _window(rig)
    assert found is not None and found.begin == _set_time(rig, 0)
