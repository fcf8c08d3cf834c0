"""Backup sizes (bars) and durations (line) over time, laid out for an inline SVG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rdsbackup.console.summary import age, size
from rdsbackup.service.views import BackupView

WIDTH, HEIGHT, PAD = 640, 180, 36


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    durations: list[tuple[float, float]]
    """The duration line's points."""
    max_size: str
    max_duration: str
    first: str
    last: str
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def chart(sets: list[BackupView]) -> Chart | None:
    """``sets``: successful sets, any order; None when there is nothing to draw."""
    ordered = sorted(sets, key=lambda b: b.start_time)
    if not ordered:
        return None
    top_size = max(b.size for b in ordered) or 1
    seconds = [max(0.0, (b.end_time - b.start_time).total_seconds()) for b in ordered]
    top_seconds = max(seconds) or 1.0
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = plot_w / len(ordered)
    bars, points = [], []
    for i, (b, took) in enumerate(zip(ordered, seconds, strict=True)):
        h = plot_h * b.size / top_size
        x = PAD + i * step
        when = b.start_time.strftime("%Y-%m-%d %H:%M")
        bars.append(
            Bar(
                round(x + step * 0.15, 1),
                round(PAD + plot_h - h, 1),
                round(step * 0.7, 1),
                round(h, 1),
                f"#{b.id} {when}: {size(b.size)} in {age_of(took)}",
            )
        )
        points.append(
            (round(x + step / 2, 1), round(PAD + plot_h - plot_h * took / top_seconds, 1))
        )
    return Chart(
        bars,
        points,
        size(top_size),
        age_of(top_seconds),
        ordered[0].start_time.strftime("%Y-%m-%d"),
        ordered[-1].start_time.strftime("%Y-%m-%d"),
    )


def age_of(seconds: float) -> str:
    return age(timedelta(seconds=seconds))
