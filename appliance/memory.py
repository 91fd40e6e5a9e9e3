"""Process-wide memory settings for the engine (glibc malloc).

Blob chunks (64 KiB - 1 MiB) are read in worker threads and freed on the event loop's thread. With
glibc's defaults every thread gets its own malloc arena, and freed chunks stay on the arenas' heaps
instead of going back to the kernel: a herd of 50 clients left the process at ~190 MB. Two arenas
stop the per-thread hoarding. (Forcing every chunk into its own mmap also fixed the herd, but the
page faults halved TLS hit throughput; a periodic ``malloc_trim`` did not lower the peak.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_M_ARENA_MAX = -8
ARENA_MAX = 2


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
    """Limit malloc arenas where glibc is the allocator; True when it took effect."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))
