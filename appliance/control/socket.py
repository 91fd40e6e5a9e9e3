"""The control socket file: a private listening Unix socket, replacing a stale one but never a live one.

The socket is created 0600 (0660 with a configured group) before it listens, so no other user can
ever connect.  A stale socket file left by a crashed run is replaced; one a live engine still
answers on is left alone and start-up fails with a clear error.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import stat
from pathlib import Path

from appliance.errors import ApplianceError

# One logger for the whole control server, whichever module logs.
log = logging.getLogger("appliance.control")


class ControlSocketError(ApplianceError):
    """The control socket cannot be created (in use by a live engine, not a socket, path too long)."""


def _alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        # Permission denied, timeout: someone holds it; stealing it could cut off a live engine.
        return True
    finally:
        probe.close()
    return True


def bind_control_socket(path: Path, group: str | None = None) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 (0660 and chgrp with ``group``)."""
    if len(os.fsencode(path)) > 100:
        raise ControlSocketError(f"control socket {path}: path too long for a Unix socket (max ~100 bytes)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"control socket {path}: a file that is not a socket is in the way")
        if _alive(path):
            raise ControlSocketError(
                f"control socket {path} is in use by a running appliance; stop it first or use another"
                " --control-socket"
            )
        log.info("replacing stale control socket %s", path)
        path.unlink()
    gid = None
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ControlSocketError(f"control socket group {group!r}: no such group") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket private from the moment it exists, not only after a chmod.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ControlSocketError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock
