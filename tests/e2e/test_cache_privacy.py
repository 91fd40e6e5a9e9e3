"""Issue 15, item 7 end to end: another local user cannot read what the real engine cached.

Root reads everything whatever the modes say, so the reads are tried as ``nobody`` (setpriv).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.process import require_binary
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e

PROBE = (
    "import sys\n"
    "for path in sys.argv[1:]:\n"
    "    try:\n"
    "        open(path, 'rb').read(1); print('read', path)\n"
    "    except PermissionError:\n"
    "        print('denied', path)\n"
)


def _as_nobody(paths: list[Path]) -> list[str]:
    setpriv = require_binary("setpriv")
    argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", PROBE]
    done = subprocess.run([*argv, *map(str, paths)], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()[::2]


def test_another_user_cannot_read_cached_blobs_manifests_or_the_index(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    if os.geteuid() != 0:
        pytest.skip("reading as another user needs root")
    # A world-traversable home, as /var/cache is: only the cache's own modes may keep others out.
    workdir = tmp_path / "a"
    workdir.mkdir()
    for directory in (tmp_path, *tmp_path.parents):
        if directory != Path("/"):
            os.chmod(directory, os.stat(directory).st_mode | 0o011)
    os.chmod(workdir, 0o755)
    old_umask = os.umask(0o022)
    try:
        spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
        with Appliance(workdir, [spec], upstream_ca=pki.ca_file) as appliance:
            image = push_test_image(open_registry, layer_sizes=(20_000, 10_000))
            skopeo_copy(
                f"docker://{image.reference(open_registry.name_port)}",
                f"dir:{tmp_path / 'pulled'}",
                https_proxy=appliance.url,
                cert_dir=appliance.cert_dir(),
            ).check()
            cache = appliance.cache_dir
            files = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".part")]
            blobs = [p for p in files if "data/blob/" in str(p)]
            manifests = [p for p in files if "data/manifest/" in str(p)]
            assert blobs and manifests and (cache / "index.sqlite") in files
            for path in [cache, *cache.rglob("*")]:
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
            # The probe can read a file it is allowed to: a denial below means the modes held.
            readable = tmp_path / "readable"
            readable.write_bytes(b"x")
            readable.chmod(0o644)
            assert _as_nobody([readable]) == ["read"]
            assert set(_as_nobody([*blobs, *manifests, cache / "index.sqlite"])) == {"denied"}
    finally:
        os.umask(old_umask)
