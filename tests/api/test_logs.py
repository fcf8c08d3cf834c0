from __future__ import annotations

import io
import json
import logging

from rdsbackup.logs import JsonLineFormatter, configure, log_context


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


def _record(message: str, *args: object) -> logging.LogRecord:
    name = "rdsbackup.jobs.runner"
    return logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)


def test_the_context_goes_on_every_line_inside_it_only() -> None:
    with log_context(RequestId="R-1", DBInstanceId="rm-1", Unset=None):
        inside = json.loads(JsonLineFormatter().format(_record("hello")))
        with log_context(BackupJobId=7):
            nested = json.loads(JsonLineFormatter().format(_record("job")))
    outside = json.loads(JsonLineFormatter().format(_record("after")))
    assert inside["RequestId"] == "R-1" and inside["DBInstanceId"] == "rm-1"
    assert "Unset" not in inside and "BackupJobId" not in inside
    assert nested["BackupJobId"] == "7" and nested["RequestId"] == "R-1"
    assert "RequestId" not in outside and "DBInstanceId" not in outside


def test_the_text_format_names_the_context_on_one_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure(logging.INFO, "text", stream=stream)
        with log_context(BackupJobId=12, DBInstanceId="rm-9"):
            logging.getLogger("rdsbackup.jobs.runner").warning("job %s failed: %s", 12, "a\nb")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "WARNING rdsbackup.jobs.runner [BackupJobId=12 DBInstanceId=rm-9]" in lines[0]
    assert lines[0].endswith("job 12 failed: a\\nb")
