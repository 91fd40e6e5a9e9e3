"""One process per cache directory: an exclusive ``flock`` on ``<cache_dir>/.lock``.

The engine holds it for its whole life; offline CLI commands (``cache verify --repair`` on a stopped
appliance) take it too, so they can never rewrite files under a running engine. The lock dies with
its process, so a ``kill -9`` leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from appliance.cache import private
from appliance.errors import ConfigError


class CacheLock:
    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the holder (blocking file I/O: call at start-up)."""
        private.make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                str(self.path.parent), f"the cache directory is in use by a running appliance (pid {holder})"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass  # a full disk: the pid only names the holder in the message above; the lock holds
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
