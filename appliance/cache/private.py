"""File modes of the cache: private to the engine's user (files 0600, directories 0700).

Cached blobs and manifests can come from private repositories, and the index names them, so no
other local user may read any of it.  Modes are set when a file or directory is created (not left
to the umask), the top of the cache is tightened at every start (constant time: without search
permission on the cache directory nothing under it can be reached), and ``cache verify --repair``
walks everything and fixes what is looser (a cache written by an older version).  All blocking.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
# Any bit for group or others.
_SHARED_BITS = 0o077


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with every directory it creates 0700 (``Path.mkdir`` gives parents the umask's)."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, DIR_MODE)


def tighten(path: Path) -> bool:
    """Make one existing file or directory private if it is not; True when its mode changed.

    Only our own files: a path someone else owns (a mount point, a shared parent) is left alone.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        return False
    wanted = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
    if stat.S_IMODE(st.st_mode) & _SHARED_BITS == 0:
        return False
    os.chmod(path, wanted)
    return True


def is_loose(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & _SHARED_BITS != 0


def loose_paths(root: Path, *, repair: bool, owner: int | None = None) -> list[str]:
    """Every file or directory under ``root`` (itself included) readable beyond its owner.

    With ``repair`` they are made private, and, when ``owner`` is given (verify run as root on an
    engine's cache), handed back to that user so the engine can still open them.
    """
    found: list[str] = []

    def visit(path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            return
        wrong_owner = owner is not None and st.st_uid != owner
        if stat.S_IMODE(st.st_mode) & _SHARED_BITS or wrong_owner:
            found.append(str(path.relative_to(root)) if path != root else ".")
            if repair:
                if wrong_owner and owner is not None:
                    os.chown(path, owner, -1, follow_symlinks=False)
                os.chmod(path, DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE)

    visit(root)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames + filenames:
            visit(base / name)
    return found
