"""The service's log lines: one JSON object per line (``json`` escapes CR, LF and every
other control character), so no value a client sends can start a line of its own; or
plain text (setting ``log_format``).

Each line carries the context of the work it belongs to: ``RequestId`` of the API call,
``BackupJobId`` / ``RestoreTaskId`` and ``DBInstanceId`` of a job's run. The context is
held in a :mod:`contextvars` variable, so it follows a request through Starlette's
thread pool and stays out of other threads (a job worker sets its own).
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Literal

_LEVEL = logging.INFO

LogFormat = Literal["json", "text"]

_NONE: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "rdsbackup_log_context", default=_NONE
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` (None values left out) to every record logged inside."""
    added = {k: str(v) for k, v in fields.items() if v is not None}
    token = _context.set({**_context.get(), **added})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, str]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the current context onto the record (``record.context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = dict(_context.get())
        return True


def _context_of(record: logging.LogRecord) -> Mapping[str, str]:
    found = getattr(record, "context", None)
    return found if isinstance(found, Mapping) else _context.get()


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            **_context_of(record),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [Key=value ...] message``, control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        context = " ".join(f"{k}={v}" for k, v in _context_of(record).items())
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        parts = [stamp, record.levelname, record.name, f"[{context}]" if context else "", text]
        line = " ".join(p for p in parts if p)
        return line.encode("unicode_escape").decode("ascii")


def configure(
    level: int = _LEVEL, log_format: LogFormat = "json", stream: IO[str] | None = None
) -> None:
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonLineFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
