"""Picking TCP ports for local servers."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOW = 20000
_handed_out: set[int] = set()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on ``port`` now. Like the servers, this uses
    SO_REUSEADDR: connections of a stopped server lingering in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1.

    Picked at random below the kernel's ephemeral range, so that outgoing connections
    never grab it between now and the server's bind, and so that concurrent test
    processes rarely pick the same one. Falls back to binding port 0.
    """
    high = _ephemeral_low()
    rng = random.SystemRandom()
    if high - _LOW > 1000:
        for _ in range(200):
            port = rng.randrange(_LOW, high)
            if port not in _handed_out and port_is_free(port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _handed_out.add(port)
    return port
