"""More API processes on ``serve``'s port (``api_processes = N``).

One Python process admits about 100-220 CreateBackup a second: the interpreter, not the
catalog, is the limit (docs/performance.md "Scale"). ``serve`` then starts N-1
``rdsbackup api-server`` processes that bind the same address with ``SO_REUSEPORT``, so
the kernel spreads connections over all N. The helpers answer the API only: the loops
(reaper, janitor, scheduler, log shipper), the local servers and the job runners stay
in ``serve``, and jobs go to the Celery workers (``dispatcher = "celery"`` is required).

A helper that exits is started again (after one second); each helper dies with
``serve``: it asks for SIGTERM when its parent ends (``PR_SET_PDEATHSIG``, set by the
helper itself first thing, not between fork and exec where other threads' locks could
hang it), then checks that its parent is still the ``serve`` that started it, so none
outlives a ``serve`` killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
RESTART_SECONDS = 1.0
STOP_SECONDS = 10.0
PARENT_ENV = "RDSBACKUP_API_PARENT"
"""The pid of the ``serve`` a helper belongs to (set for its children only)."""


def die_with_parent() -> None:
    """In a helper: SIGTERM when ``serve`` ends, and exit now if it already has."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return  # started by hand: no parent to follow
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        raise SystemExit("rdsbackup api-server: serve has ended")


class ApiProcesses:
    """``count`` ``rdsbackup api-server`` children, kept running until :meth:`stop`."""

    def __init__(self, count: int, host: str, port: int, config: Path | None) -> None:
        self.command = [sys.executable, "-m", "rdsbackup", "api-server"]
        self.command += ["--host", host, "--port", str(port)]
        if config is not None:
            self.command += ["--config", str(config)]
        self.count = count
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._procs = [self._spawn() for _ in range(self.count)]
        self._watcher = threading.Thread(target=self._watch, name="api-processes", daemon=True)
        self._watcher.start()
        log.info("started %d more API processes: %s", self.count, [p.pid for p in self._procs])

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, env={**os.environ, PARENT_ENV: str(os.getpid())})

    def _watch(self) -> None:
        while not self._stopping.wait(RESTART_SECONDS):
            for i, proc in enumerate(self._procs):
                code = proc.poll()
                if code is not None and not self._stopping.is_set():
                    log.warning("API process %d exited with %s: starting it again", proc.pid, code)
                    self._procs[i] = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=RESTART_SECONDS * 2)
        for proc in self._procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
