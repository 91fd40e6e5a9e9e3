#!/usr/bin/env python3
"""Container entrypoint: give the volumes to the appliance user, drop root, exec the command.

Docker creates a missing bind-mount source (``-v $(pwd)/docker_mirror_cache:/docker_mirror_cache``)
owned by root, and a ``/ca`` carried over from docker-registry-proxy holds a root-owned ``ca.key``.
So that the seed's ``docker run`` lines work unchanged while the engine never runs as root, the image
starts as root, this script hands the writable paths to ``$APPLIANCE_UID`` and switches to that uid
before ``exec``.  Started as any other user (Kubernetes ``runAsUser``, ``docker run --user``) it
changes nothing and only execs, so a read-only or pre-owned volume is never touched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_UID = 10001
# The image's volumes and the control socket's directory; APPLIANCE_VOLUMES (colon separated)
# replaces the list, for tests and for images that mount elsewhere.
WRITABLE = "/docker_mirror_cache:/ca:/var/lib/registry-appliance"
HOME = "/var/lib/registry-appliance"


def _say(message: str) -> None:
    print(f"appliance-entrypoint: {message}", file=sys.stderr, flush=True)


def _target_ids() -> tuple[int, int]:
    raw = os.environ.get("APPLIANCE_UID", str(DEFAULT_UID)).strip()
    if not raw.isdigit():
        _say(f"APPLIANCE_UID={raw!r} is not a numeric uid")
        raise SystemExit(2)
    uid = int(raw)
    return uid, uid


def _hand_over(root: Path, uid: int, gid: int) -> int:
    """Chown every entry under ``root`` not already owned by ``uid``; returns how many changed.

    Only mismatches are changed (a second start walks but writes nothing) and symlinks are never
    followed, so a link planted in a volume cannot redirect the chown outside it.
    """
    changed = 0
    try:
        top = root.lstat()
    except FileNotFoundError:
        return 0
    if root.is_symlink():
        return 0
    entries: list[tuple[str, os.stat_result | None]] = [(str(root), top)]
    for directory, dirnames, filenames in os.walk(root):
        entries.extend((os.path.join(directory, name), None) for name in (*dirnames, *filenames))
    for path, known in entries:
        try:
            info = known or os.lstat(path)
            if info.st_uid != uid or info.st_gid != gid:
                os.lchown(path, uid, gid)
                changed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            # A read-only mount (a Secret, `:ro`) is the user's decision: the engine reports what
            # it then cannot write, with the path.
            _say(f"cannot chown {path}: {exc.strerror}")
            return changed
    return changed


def main(argv: list[str]) -> int:
    command = argv or ["appliance", "run"]
    uid, gid = _target_ids()
    if os.getuid() == 0 and uid != 0:
        for root in (Path(p) for p in os.environ.get("APPLIANCE_VOLUMES", WRITABLE).split(":") if p):
            changed = _hand_over(root, uid, gid)
            if changed:
                _say(f"gave {changed} path(s) under {root} to uid {uid}")
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        os.environ["HOME"] = HOME
        os.environ["USER"] = os.environ["LOGNAME"] = "appliance"
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _say(f"cannot run {command[0]!r}: {exc.strerror}")
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
