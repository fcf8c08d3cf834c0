"""UTC time in the catalog (naive datetimes, always UTC) and Alibaba's wire formats."""

from __future__ import annotations

from datetime import UTC, datetime

WIRE_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
WIRE_MINUTES = "%Y-%m-%dT%H:%MZ"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def to_wire(value: datetime | None) -> str:
    return value.strftime(WIRE_SECONDS) if value else ""


def parse_wire(value: str, fmt: str) -> datetime:
    return datetime.strptime(value, fmt)


def utc_day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def epoch_seconds(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp())
