"""Synthetic images of any size, built by streaming to disk (the test fixture holds layers in memory).

Each layer is a gzip'd tar of one file of random bytes (incompressible, so the blob is about the size
asked for).  The layout is pushed with the fixture's ``push_layout`` (skopeo, digests preserved).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from tests.fixtures.images import BuiltImage, ImageInfo, PlatformImage, host_platform, push_layout
from tests.fixtures.process import FixtureError
from tests.fixtures.registry import UpstreamRegistry

_OCI = "application/vnd.oci.image"
_CHUNK = 4 * 1024 * 1024


class _HashingWriter:
    """A file object that hashes and counts what goes through it."""

    def __init__(self, target: object) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)  # type: ignore[attr-defined]
        return len(data)

    def flush(self) -> None:
        self.target.flush()  # type: ignore[attr-defined]


def _write_layer(blobs: Path, size: int, index: int) -> tuple[str, int, str]:
    """(blob digest, blob size, diff id) of a new layer written under ``blobs``."""
    partial = blobs / f".layer-{index}.partial"
    with partial.open("wb") as out:
        blob = _HashingWriter(out)
        with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=1, mtime=0) as gz:  # type: ignore[arg-type]
            tar_hash = _HashingWriter(gz)
            with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
                info = tarfile.TarInfo(f"layer-{index}.bin")
                info.size = size
                info.mode = 0o644
                tar.addfile(info, _RandomReader(size))
    digest = "sha256:" + blob.hash.hexdigest()
    partial.rename(blobs / digest.removeprefix("sha256:"))
    return digest, blob.size, "sha256:" + tar_hash.hash.hexdigest()


class _RandomReader:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left, _CHUNK)
        self.left -= n
        return os.urandom(n)


def _put(blobs: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    return digest


def build_big_layout(directory: Path, layer_sizes: Sequence[int], tag: str = "latest") -> BuiltImage:
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layers = [_write_layer(blobs, size, i) for i, size in enumerate(layer_sizes)]
    os_name, _, arch = host_platform().partition("/")
    config = json.dumps(
        {
            "architecture": arch,
            "os": os_name,
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["/layer-0.bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, _, diff in layers]},
        },
        sort_keys=True,
    ).encode()
    config_digest = _put(blobs, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": f"{_OCI}.manifest.v1+json",
            "config": {"mediaType": f"{_OCI}.config.v1+json", "digest": config_digest, "size": len(config)},
            "layers": [
                {"mediaType": f"{_OCI}.layer.v1.tar+gzip", "digest": d, "size": s} for d, s, _ in layers
            ],
        },
        indent=2,
    ).encode()
    manifest_digest = _put(blobs, manifest)
    top = {
        "mediaType": f"{_OCI}.manifest.v1+json",
        "digest": manifest_digest,
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    image = PlatformImage(
        platform=host_platform(),
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layer_digests=tuple(d for d, _, _ in layers),
        layer_sizes=tuple(s for _, s, _ in layers),
        config_size=len(config),
    )
    return BuiltImage(
        layout=directory,
        source=f"oci:{directory}:{tag}",
        tag=tag,
        manifest_digest=manifest_digest,
        media_type=f"{_OCI}.manifest.v1+json",
        images=(image,),
        is_index=False,
    )


def push_big_image(
    registry: UpstreamRegistry, repository: str, workdir: Path, layer_sizes: Sequence[int]
) -> ImageInfo:
    built = build_big_layout(workdir / f"layout-{repository.replace('/', '_')}", layer_sizes)
    result = push_layout(built, registry, repository)
    if not result.ok or result.digest != built.manifest_digest:
        raise FixtureError(f"pushing {repository} failed:\n{result.output[-3000:]}")
    image = built.images[0]
    return ImageInfo(
        repository=repository,
        tag=built.tag,
        manifest_digest=built.manifest_digest,
        layer_digests=image.layer_digests,
        config_digest=image.config_digest,
        total_size=image.config_size + sum(image.layer_sizes),
        media_type=built.media_type,
        platforms=built.images,
    )
