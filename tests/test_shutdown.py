"""rdsbackup.shutdown in a process of its own: a stop signal while the service is still
being set up ends the set-up and lets the cleanup run; a second signal, or a stop longer
than the bound, exits at once with code 1 and kills the tools' process groups."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rdsbackup.instances.servers_os import process_alive

SCRIPT = textwrap.dedent(
    """
    import logging, subprocess, sys, time
    from rdsbackup.shutdown import StopRequested, StopSignals

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    slow_stop, bound = sys.argv[1] == "slow-stop", float(sys.argv[2])
    tool = subprocess.Popen(["sleep", "600"], process_group=0)  # as ToolProcess runs tools
    with StopSignals(signal_servers=False, bound=bound):
        try:
            print("setting up", tool.pid, flush=True)
            time.sleep(60)
        except StopRequested:
            print("set-up ended", flush=True)
        if slow_stop:
            time.sleep(60)
        tool.kill()
    print("stopped", flush=True)
    """
)


def run(mode: str, bound: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode, str(bound)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("setting up"), first
    return proc, int(first.split()[-1])


def finish(proc: subprocess.Popen[str], within: float) -> tuple[int, str, float]:
    started = time.monotonic()
    out, _ = proc.communicate(timeout=within + 10)
    return proc.returncode, out, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_set_up_lets_the_cleanup_run(sig: signal.Signals) -> None:
    proc, tool = run("quick-stop", 30)
    proc.send_signal(sig)
    code, out, seconds = finish(proc, 5)
    assert code == 0, out
    assert "set-up ended" in out and "stopped" in out and f"{sig.name} received" in out
    assert seconds < 5
    assert not process_alive(tool)


def test_a_second_signal_exits_at_once_and_kills_the_tools() -> None:
    proc, tool = run("slow-stop", 30)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # still stopping
    proc.send_signal(signal.SIGTERM)
    code, out, seconds = finish(proc, 5)
    assert code == 1, out
    assert "SIGTERM again while stopping: exiting now" in out
    assert seconds < 2
    _reaped(tool)


def test_a_stop_over_the_bound_exits() -> None:
    proc, tool = run("slow-stop", 1)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, out, _ = finish(proc, 5)
    assert code == 1, out
    assert "the stop took longer than 1 s: exiting now" in out
    assert 1 <= time.monotonic() - started < 5
    _reaped(tool)


def _reaped(pid: int) -> None:
    deadline = time.monotonic() + 5
    while process_alive(pid):  # orphaned, then reaped by init
        assert time.monotonic() < deadline, f"tool {pid} survived"
        time.sleep(0.05)
