"""How ``serve`` and ``demo`` stop on SIGTERM and SIGINT.

The first signal stops the service in order (``Service.stop``): no new requests, running
jobs failed with "service stopped" and their tools killed, queued jobs left to the next
start, local servers stopped. A second signal, or a stop that overruns
:data:`STOP_SECONDS`, exits at once (code 1) after killing the tools and signalling the
servers this process started.

uvicorn's own handlers are not used: once it returns they raise the signal again, and
SIGTERM's default action then ended the process before anything was cleaned up.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn

from rdsbackup.processes import kill_tool_groups, session_leaders

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_SECONDS = 30.0
"""The longest a stop may take before the process exits without finishing it."""


class StopRequested(BaseException):
    """Raised in the main thread by a stop signal that arrives before the API serves."""


class ApiServer(uvicorn.Server):
    """uvicorn serving until :class:`StopSignals` sets ``should_exit``."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StopSignals:
    """Installs the stop handlers for as long as the ``with`` block runs."""

    def __init__(self, *, signal_servers: bool, bound: float = STOP_SECONDS) -> None:
        self.signal_servers = signal_servers
        self.bound = bound
        self.received: str | None = None
        self.server: ApiServer | None = None
        self._previous: dict[int, Any] = {}
        self._watchdog: threading.Timer | None = None

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._watchdog is not None:
            self._watchdog.cancel()

    def serve(self, server: ApiServer, sockets: list[socket.socket] | None = None) -> None:
        self.server = server
        if self.received is None:
            server.run(sockets)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self.exit_now(f"{name} again while stopping")
        self.received = name
        log.info("%s received: stopping (send it again to exit at once)", name)
        self._watchdog = threading.Timer(
            self.bound, self.exit_now, (f"the stop took longer than {self.bound:g} s",)
        )
        self._watchdog.daemon = True
        self._watchdog.start()
        if self.server is None:
            raise StopRequested(name)
        self.server.should_exit = True

    def exit_now(self, why: str) -> None:
        """Kill the tools, signal the servers this process started, and exit (code 1)."""
        killed = kill_tool_groups()
        servers = session_leaders() if self.signal_servers else []
        for pid in servers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        log.warning(
            "%s: exiting now (killed tool groups %s, asked servers %s to stop)",
            why,
            killed,
            servers,
        )
        logging.shutdown()
        os._exit(1)


def exit_if_threads_stuck(timeout: float = 2.0) -> None:
    """Exit (code 0) when worker threads outlived the stop: their work is already
    failed, and Python would otherwise wait for them at exit."""
    main = threading.main_thread()
    stuck = [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    for thread in stuck:
        thread.join(timeout / max(1, len(stuck)))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        log.warning(
            "exiting without %s (their work is recorded as failed)", [t.name for t in stuck]
        )
        logging.shutdown()
        os._exit(0)


def serve_until_stopped(
    signals: StopSignals,
    asgi: Callable[..., Any],
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
) -> None:
    """``reuse_port``: bind with ``SO_REUSEPORT``, so that the API processes of
    ``api_processes`` (rdsbackup.apiprocs) share the port."""
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through the service's JSON-line handler too
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    signals.serve(ApiServer(config), [shared_socket(host, port)] if reuse_port else None)


def shared_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock
