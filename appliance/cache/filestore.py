"""The filesystem ``BlobStore``: objects as files, written and read on thread pools.

Layout under the store root::

    tmp/<random>.part                              fills in progress (swept at start)
    data/<kind>/<registry>/<alg>/<hex[:2]>/<hex>   committed, verified objects

A file appears under ``data/`` only by an atomic rename after its digest and length were verified,
so any file there is correct unless the disk itself corrupted it (``verify`` re-hashes for that).
Files are created 0600 and directories 0700 (``private``): cached content may be private images.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from appliance.cache import private
from appliance.cache.blobstore import BlobKey, BlobStore, Kind, ObjectReader, StoredObject, TempBlob
from appliance.digests import Algorithm, Digest, DigestHasher

T = TypeVar("T")


class _Files:
    """The thread pools a filesystem store runs its blocking calls on.

    Writes get their own pool so that many slow readers queued on the read pool never delay a fill.
    """

    def __init__(self, read_threads: int, write_threads: int) -> None:
        self.read_pool = ThreadPoolExecutor(read_threads, thread_name_prefix="cache-read")
        self.write_pool = ThreadPoolExecutor(write_threads, thread_name_prefix="cache-write")

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.read_pool, functools.partial(fn, *args))

    async def write(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.write_pool, functools.partial(fn, *args))

    def shutdown(self) -> None:
        self.read_pool.shutdown(wait=True, cancel_futures=False)
        self.write_pool.shutdown(wait=True, cancel_futures=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileReader(ObjectReader):
    def __init__(self, files: _Files, fd: int, size: int, path: Path) -> None:
        self._files = files
        self._fd: int | None = fd
        self.size = size
        self.path = path

    async def read_at(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise ValueError("reader is closed")
        return await self._files.read(os.pread, self._fd, length, offset)

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing an fd does not touch the disk


class _FileTemp(TempBlob):
    def __init__(self, files: _Files, fd: int, temp: Path, final: Path) -> None:
        self._files = files
        self._fd = fd
        self._temp = temp
        self._final = final
        self._offset = 0
        self._released = False

    async def write(self, data: bytes, also: Callable[[bytes], object] | None = None) -> None:
        offset = self._offset
        self._offset += len(data)
        await self._files.write(self._write_all, data, offset, also)

    def _write_all(self, data: bytes, offset: int, also: Callable[[bytes], object] | None = None) -> None:
        if also is not None:
            also(data)
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    async def read_at(self, offset: int, length: int) -> bytes:
        return await self._files.read(os.pread, self._fd, length, offset)

    async def commit(self) -> None:
        await self._files.write(self._commit)

    def _commit(self) -> None:
        os.fsync(self._fd)
        private.make_dirs(self._final.parent)
        os.rename(self._temp, self._final)
        _fsync_dir(self._final.parent)

    async def discard(self) -> None:
        await self._files.write(self._unlink)

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    async def release(self) -> None:
        if not self._released:
            self._released = True
            os.close(self._fd)


class FileBlobStore(BlobStore):
    """Objects as files under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, read_threads: int = 4, write_threads: int = 2) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.data_dir = root / "data"
        self._files = _Files(read_threads, write_threads)

    def path_for(self, key: BlobKey) -> Path:
        hex_ = key.digest.hex
        return self.data_dir / key.kind / key.registry / key.digest.algorithm / hex_[:2] / hex_

    def local_path(self, key: BlobKey) -> Path | None:
        return self.path_for(key)

    async def start(self) -> int:
        return await self._files.write(self._start)

    def _start(self) -> int:
        private.make_dirs(self.data_dir)
        private.make_dirs(self.tmp_dir)
        # The top made private at every start (a cache from before modes were set, a directory
        # made by a packager): nothing beneath can be reached by others without these.
        for directory in (self.root, self.data_dir, self.tmp_dir):
            private.tighten(directory)
        swept = 0
        for entry in os.scandir(self.tmp_dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                swept += 1
        return swept

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._files.shutdown)

    async def create_temp(self, key: BlobKey) -> TempBlob:
        temp = self.tmp_dir / f"{uuid.uuid4().hex}.part"
        fd = await self._files.write(os.open, temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, private.FILE_MODE)
        return _FileTemp(self._files, fd, temp, self.path_for(key))

    async def open(self, key: BlobKey) -> ObjectReader | None:
        path = self.path_for(key)
        opened = await self._files.read(self._open, path)
        if opened is None:
            return None
        fd, size = opened
        return _FileReader(self._files, fd, size, path)

    @staticmethod
    def _open(path: Path) -> tuple[int, int] | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        return fd, os.fstat(fd).st_size

    async def exists(self, key: BlobKey) -> bool:
        return await self._files.read(self.path_for(key).is_file)

    async def delete(self, key: BlobKey) -> None:
        await self._files.write(self._delete, self.path_for(key))

    @staticmethod
    def _delete(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    async def put_small(self, key: BlobKey, data: bytes) -> None:
        await self._files.write(self._put_small, key, data)

    def _put_small(self, key: BlobKey, data: bytes) -> None:
        temp = self.tmp_dir / f"{uuid.uuid4().hex}.part"
        final = self.path_for(key)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private.FILE_MODE)
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            private.make_dirs(final.parent)
            os.rename(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        _fsync_dir(final.parent)

    async def scan(self) -> AsyncIterator[StoredObject]:
        # One directory (one registry/algorithm/prefix) per thread hop keeps memory bounded.
        for directory in await self._files.read(self._leaf_dirs):
            for obj in await self._files.read(self._scan_dir, directory):
                yield obj

    def _leaf_dirs(self) -> list[tuple[Kind, str, Algorithm, Path]]:
        found: list[tuple[Kind, str, Algorithm, Path]] = []
        for kind in Kind:
            kind_dir = self.data_dir / kind
            if not kind_dir.is_dir():
                continue
            for reg in sorted(os.scandir(kind_dir), key=lambda e: e.name):
                for alg in Algorithm:
                    alg_dir = Path(reg.path) / alg
                    if alg_dir.is_dir():
                        found.extend((kind, reg.name, alg, Path(p.path)) for p in os.scandir(alg_dir))
        return found

    @staticmethod
    def _scan_dir(leaf: tuple[Kind, str, Algorithm, Path]) -> list[StoredObject]:
        kind, registry, algorithm, directory = leaf
        objects: list[StoredObject] = []
        for entry in os.scandir(directory):
            try:
                key = BlobKey.of(registry, kind, f"{algorithm}:{entry.name}")
                stat = entry.stat()
            except (ValueError, FileNotFoundError):
                continue
            if key.digest.hex[:2] != directory.name:
                continue
            objects.append(StoredObject(key, stat.st_size, stat.st_mtime))
        return objects

    async def hash(self, key: BlobKey, algorithm: Algorithm) -> Digest | None:
        return await self._files.read(self._hash, self.path_for(key), algorithm)

    @staticmethod
    def _hash(path: Path, algorithm: Algorithm) -> Digest | None:
        hasher = DigestHasher(algorithm)
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    hasher.update(chunk)
        except FileNotFoundError:
            return None
        return hasher.digest()

    async def free_space(self) -> int | None:
        usage = await self._files.read(shutil.disk_usage, self.root)
        return usage.free

    async def strays(self, *, remove: bool) -> list[str]:
        return await self._files.write(self._strays, remove)

    def _strays(self, remove: bool) -> list[str]:
        stray: list[str] = []
        for dirpath, _dirs, names in os.walk(self.data_dir):
            for name in names:
                path = Path(dirpath) / name
                rel = path.relative_to(self.data_dir).parts
                if len(rel) != 5 or not _valid_rel(rel):
                    stray.append(str(path.relative_to(self.root)))
                    if remove:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
        return stray

    async def loose_modes(self, *, repair: bool) -> list[str]:
        return await self._files.write(self._loose_modes, repair)

    def _loose_modes(self, repair: bool) -> list[str]:
        # Run as root on an engine's cache (offline verify), files are also handed back to the
        # owner of the cache directory, the engine's user, so the engine can still open them.
        owner = self.root.stat().st_uid if os.geteuid() == 0 else None
        return private.loose_paths(self.root, repair=repair, owner=owner)


def _valid_rel(parts: tuple[str, ...]) -> bool:
    kind, registry, algorithm, prefix, hex_ = parts
    try:
        key = BlobKey.of(registry, Kind(kind), f"{algorithm}:{hex_}")
    except ValueError:
        return False
    return key.digest.hex[:2] == prefix
