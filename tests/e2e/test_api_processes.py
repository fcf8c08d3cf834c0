"""``api_processes = 2``: ``serve`` and one ``rdsbackup api-server`` share the port
(SO_REUSEPORT). The helper answers calls itself, is started again when it dies, and
ends with ``serve``, even a ``serve`` killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_workers import redis_url  # noqa: F401 - a fixture
from tests.fixtures.service import RDSBACKUP, ServiceProcess, signed_v1


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` (IPv4), from /proc/net/tcp (state 0A: LISTEN)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            count += 1
    return count


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _wait(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0)
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_two_api_processes_share_the_port(
    service_maker: Callable[..., ServiceProcess],
    redis_url: str,  # noqa: F811
) -> None:
    svc = service_maker(dispatcher="celery", broker_url=redis_url, api_processes=2)
    key = svc.add_key("acct1")
    svc.start()
    assert svc.proc is not None
    serve_pid = svc.proc.pid
    try:
        _wait(lambda: _listeners(svc.port) == 2, 30, "the helper never listened")
        (helper,) = _children(serve_pid)

        # With serve stopped (SIGSTOP), only the helper can answer: of 12 new
        # connections, the kernel gives it about half.
        os.kill(serve_pid, signal.SIGSTOP)
        answered = 0
        try:
            for _ in range(12):
                try:
                    resp = httpx.get(svc.url, timeout=1.5)
                except httpx.TimeoutException:
                    continue
                assert resp.status_code == 400, resp.text  # no Action: an Alibaba error
                assert "<Code>MissingParameter" in resp.text, resp.text
                answered += 1
        finally:
            os.kill(serve_pid, signal.SIGCONT)
        assert answered >= 1, "the helper answered no call"

        # Signed calls go through either process alike.
        for _ in range(10):
            resp = signed_v1(svc.endpoint, key, "DescribeDBInstances", {"RegionId": "cn-hangzhou"})
            assert resp.status_code == 200, resp.text

        os.kill(helper, signal.SIGKILL)
        _wait(lambda: bool(_children(serve_pid) - {helper}), 15, "the helper was not restarted")
        _wait(lambda: _listeners(svc.port) == 2, 30, "the new helper never listened")
        (second,) = _children(serve_pid) - {helper}
    finally:
        svc.stop()
    assert not _alive(second), "the helper outlived serve"
    assert _listeners(svc.port) == 0

    # serve killed with SIGKILL (itself, not its process group): the helper follows.
    svc.start()
    assert svc.proc is not None
    try:
        _wait(lambda: _listeners(svc.port) == 2, 30, "the helper never listened")
        (orphan,) = _children(svc.proc.pid)
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait()
        _wait(lambda: not _alive(orphan), 15, "the helper outlived a killed serve")
    finally:
        svc.stop(kill=True)


def test_more_api_processes_need_celery(tmp_path: Path) -> None:
    config = tmp_path / "rdsbackup.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\napi_processes = 2\n')
    done = subprocess.run(
        [RDSBACKUP, "serve"],
        env={**os.environ, "RDSBACKUP_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert 'needs dispatcher = "celery"' in done.stdout + done.stderr
    assert not (tmp_path / "state" / "catalog.db").exists()
