"""``appliance cache ls|verify|purge`` on a stopped engine's cache named by ``--cache-dir``.

The real command in a subprocess, on a cache filled in-process through the registry layer from a
counting upstream; no engine runs, so each command falls back to the directory itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cache.lock import CacheLock
from tests.fixtures.counting_upstream import CountingUpstream
from tests.fixtures.registry_proxy import ProxyUnderTest
from tests.tui.fake_engine import FakeEngine, load_recording

APPLIANCE = Path(sys.executable).parent / "appliance"


def cache_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # HOME in tmp_path: no config file is found, and the default control socket answers nothing.
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    return subprocess.run(
        [str(APPLIANCE), "cache", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def filled(tmp_path: Path) -> tuple[Path, str]:
    """A cache directory holding one pulled image, and the registry it came from."""
    cache_dir = tmp_path / "elsewhere" / "cache"
    async with CountingUpstream() as upstream:
        image = upstream.add_image("team/app", "v1", [b"one" * 100, b"two" * 100])
        async with ProxyUnderTest(upstream, cache_dir) as proxy:
            await proxy.get(f"/v2/{image.repository}/manifests/{image.tag}")
            for digest in image.blob_digests:
                await proxy.get(f"/v2/{image.repository}/blobs/{digest}")
            await proxy.blobs.wait_fills()
            host = proxy.registry.host
    return cache_dir, host


def test_cache_ls_reads_the_directory_given_by_cache_dir(tmp_path: Path, filled: tuple[Path, str]) -> None:
    cache_dir, host = filled

    listed = cache_cli(tmp_path, "ls", "--cache-dir", str(cache_dir))

    assert listed.returncode == 0, listed.stderr
    assert f"{host}/team/app" in listed.stdout
    assert "tags=v1" in listed.stdout


def test_cache_verify_checks_the_directory_given_by_cache_dir(
    tmp_path: Path, filled: tuple[Path, str]
) -> None:
    cache_dir, _ = filled

    verified = cache_cli(tmp_path, "verify", "--cache-dir", str(cache_dir))

    assert verified.returncode == 0, verified.stderr
    assert str(cache_dir) in verified.stderr


def test_cache_purge_empties_the_directory_given_by_cache_dir(
    tmp_path: Path, filled: tuple[Path, str]
) -> None:
    cache_dir, host = filled

    purged = cache_cli(tmp_path, "purge", "--all", "--cache-dir", str(cache_dir))
    assert purged.returncode == 0, purged.stderr
    assert re.search(r"purged [1-9]\d* entries", purged.stdout), purged.stdout

    listed = cache_cli(tmp_path, "ls", "--cache-dir", str(cache_dir))
    assert listed.returncode == 0, listed.stderr
    assert host not in listed.stdout


def test_the_control_socket_flag_of_run_is_accepted(tmp_path: Path, filled: tuple[Path, str]) -> None:
    cache_dir, host = filled

    listed = cache_cli(
        tmp_path, "ls", "--control-socket", str(tmp_path / "none.sock"), "--cache-dir", str(cache_dir)
    )

    assert listed.returncode == 0, listed.stderr
    assert f"{host}/team/app" in listed.stdout


def test_a_cache_dir_that_does_not_exist_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo"

    result = cache_cli(tmp_path, "ls", "--cache-dir", str(missing))

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("appliance: error: --cache-dir")
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_a_cache_dir_in_use_is_refused_without_being_touched(
    tmp_path: Path, filled: tuple[Path, str]
) -> None:
    cache_dir, _ = filled
    with CacheLock(cache_dir):
        result = cache_cli(tmp_path, "purge", "--all", "--cache-dir", str(cache_dir))
    assert result.returncode == 2
    assert "in use by a running appliance" in result.stderr

    listed = cache_cli(tmp_path, "ls", "--cache-dir", str(cache_dir))
    assert "team/app" in listed.stdout


def test_an_engine_serving_another_cache_is_not_asked_about_the_one_named(
    tmp_path: Path, filled: tuple[Path, str]
) -> None:
    cache_dir, host = filled
    socket = tmp_path / "control.sock"
    recording = load_recording()  # an engine whose cache is /var/lib/registry-appliance/cache
    engine = FakeEngine(socket, recording).start()
    try:
        from_engine = cache_cli(tmp_path, "ls", "--socket", str(socket))
        named = cache_cli(tmp_path, "ls", "--socket", str(socket), "--cache-dir", str(cache_dir))
        recording["config"]["cache_dir"] = str(cache_dir)
        same = cache_cli(tmp_path, "ls", "--socket", str(socket), "--cache-dir", str(cache_dir))
    finally:
        engine.stop()

    assert "library/nginx" in from_engine.stdout
    assert named.returncode == 0, named.stderr
    assert f"{host}/team/app" in named.stdout and "library/nginx" not in named.stdout
    # When the engine does serve that directory, it is the one asked (the directory is its own).
    assert "library/nginx" in same.stdout
