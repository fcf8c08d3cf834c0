"""The sizes/durations chart: bars scale with size, the line with duration."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from rdsbackup.console.chart import HEIGHT, PAD, chart
from rdsbackup.service.views import BackupView

START = datetime(2026, 12, 1, 2, 0)


def _set(backup_id: int, size: int, seconds: int, day: int) -> BackupView:
    begin = START + timedelta(days=day)
    fields: dict[str, object] = {
        f.name: None for f in dataclasses.fields(BackupView) if f.default is dataclasses.MISSING
    }
    fields.update(
        id=backup_id,
        start_time=begin,
        end_time=begin + timedelta(seconds=seconds),
        size=size,
        db_names=[],
        is_avail=True,
    )
    return BackupView(**fields)  # type: ignore[arg-type]


def test_bars_scale_with_size_and_the_line_with_duration_oldest_first() -> None:
    drawn = chart([_set(2, 500, 30, 1), _set(1, 1000, 120, 0)])
    assert drawn is not None
    full, half = drawn.bars  # oldest first, whatever order the sets came in
    assert full.height == HEIGHT - 2 * PAD and half.height == full.height / 2
    assert full.x < half.x and "#1" in full.title and "1000 B" in full.title
    (x1, y1), (x2, y2) = drawn.durations
    assert x1 < x2
    assert y1 == PAD and y2 == PAD + (HEIGHT - 2 * PAD) * 0.75  # 30 s of the longest 120 s
    assert (drawn.first, drawn.last, drawn.max_duration) == (
        "2026-12-01",
        "2026-12-02",
        "2 min 0 s",
    )


def test_nothing_to_draw_without_a_set() -> None:
    assert chart([]) is None
