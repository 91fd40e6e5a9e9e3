"""Process-wide memory settings for the engine (glibc malloc).

Blob chunks (32 KiB - 2 MiB) are read in worker threads and freed on the event loop's thread. With
glibc's defaults every thread gets its own malloc arena, and freed chunks stay on the arenas' heaps
instead of going back to the kernel: a herd of 50 clients left the process at ~190 MB. Two arenas
stop the per-thread hoarding. (Forcing every chunk into its own mmap also fixed the herd, but the
page faults halved TLS hit throughput; a periodic ``malloc_trim`` did not lower the peak.)

Blob-sized buffers (the TLS layer's reads and joins, HTTP body slices, chunks of up to 2 MiB) are
allocated and freed thousands of times a second. Above glibc's mmap threshold each one is a fresh
mapping, so a 1 MiB copy costs 256 page faults (0.45 ms instead of 0.03 ms); below it, freed heap
tops go back to the kernel at the trim threshold and fault in again on the next request. Fixed
thresholds keep those buffers on the heap: a cold 12-layer pull went from 1.43x to 1.32x a direct
one. (Setting either threshold turns off glibc's adaptive mmap threshold; the trim threshold alone
left 1 MiB buffers mmapped and made the same pull 1.64x: both are set.) The cost: after a herd of
50 clients the idle process keeps ~9 MB more resident (100-106 MB against 91-97 MB), the free heap
tops under the trim threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENA_MAX = 2
# Above the largest buffer a blob stream allocates (a hit's 2 MiB read; a fill's 1 MiB join of TLS
# records).
MMAP_THRESHOLD = 4 * 1024 * 1024
# Free memory kept at the top of a heap before it is returned to the kernel.
TRIM_THRESHOLD = 16 * 1024 * 1024


def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - probing: only glibc has it
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return None
    return libc


def tune_malloc() -> bool:
    """Limit malloc arenas and fix its thresholds where glibc is the allocator; True if it took."""
    libc = _libc()
    if libc is None:
        return False
    settings = (
        (_M_ARENA_MAX, ARENA_MAX),
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    )
    return all([bool(libc.mallopt(option, value)) for option, value in settings])


def release_free_memory() -> bool:
    """Hand free heap pages back to the kernel (glibc ``malloc_trim``); True if anything went back.

    The fixed trim threshold above keeps freed memory on the heap; after a burst of connections
    ends (2000 stalled TLS tunnels cut at their deadline: ~125 MB of OpenSSL and protocol state)
    it would stay resident for good.  The front door calls this after many connections ended.
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
