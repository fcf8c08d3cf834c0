"""Keeping the service's resident memory flat across backups.

With glibc's defaults a threaded Python service ratchets up: each thread that allocates
gets its own malloc arena, and after a large buffer (a zstd job buffer, a 1 MiB chunk)
is freed glibc raises its mmap threshold, so later buffers of that size come from the
heap and are never given back. Measured on 1 GiB backups, RSS grew 97 -> 221 MB over
eight backups; with two arenas and a fixed mmap threshold it stays flat
(docs/performance.md).

The mmap threshold sits just above the 1 MiB chunks that stream through the service: a
chunk that came from mmap costs a page fault per 4 KiB each time, and a 128 KiB
threshold made a PostgreSQL base backup's extraction take 2.1-2.5 s instead of
1.2-1.4 s (glibc's defaults: 1.5-1.6 s on the same run). Chunks of up to 1 MiB are
reused from the heap; zstd's job buffers and anything larger are still mapped and given
back when freed, and at most 1 MiB stays free at the top of each of the two arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = (1024 + 64) * 1024
TRIM_THRESHOLD = 1024 * 1024


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
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        )
    )
    if not ok:
        log.warning("mallopt refused a setting; resident memory may grow across backups")
    return ok
