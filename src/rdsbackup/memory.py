"""Keeping the service's resident memory flat across backups.

With glibc's defaults a threaded Python service ratchets up: each thread that allocates
gets its own malloc arena, and after a large buffer (a zstd job buffer, a 1 MiB chunk)
is freed glibc raises its mmap threshold, so later buffers of that size come from the
heap and are never given back. Measured on 1 GiB backups, RSS grew 97 -> 221 MB over
eight backups; with two arenas and a fixed 128 KiB mmap/trim threshold it stays at
~100 MB between backups and peaks at ~140 MB (docs/performance.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
THRESHOLD = 128 * 1024


def bound_heap() -> bool:
    """Apply the settings (call before threads start); False where glibc is absent."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(
        mallopt(option, value) == 1
        for option, value in (
            (M_ARENA_MAX, 2),
            (M_MMAP_THRESHOLD, THRESHOLD),
            (M_TRIM_THRESHOLD, THRESHOLD),
        )
    )
    if not ok:
        log.warning("mallopt refused a setting; resident memory may grow across backups")
    return ok
