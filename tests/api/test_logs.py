from __future__ import annotations

import json
import logging

from rdsbackup.logs import JsonLineFormatter


def test_a_value_with_newlines_stays_on_one_line() -> None:
    record = logging.LogRecord(
        "rdsbackup.api.http",
        logging.INFO,
        __file__,
        1,
        "%s: %s",
        ("R1", "x\r\nFAKE LINE\x1b"),
        None,
    )
    line = JsonLineFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    entry = json.loads(line)
    assert entry["message"] == "R1: x\r\nFAKE LINE\x1b"
    assert entry["level"] == "INFO" and entry["logger"] == "rdsbackup.api.http"


def test_exceptions_are_inside_the_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonLineFormatter().format(record)
    assert "\n" not in line and "ValueError: bad\nvalue" in json.loads(line)["exception"]
