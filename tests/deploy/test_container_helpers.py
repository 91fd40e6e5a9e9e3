"""The image's entrypoint and healthcheck helpers (deploy/container/), run for real on this host."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy/container"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"container_{name}", CONTAINER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load("healthcheck")
entrypoint = _load("entrypoint")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown and setuid need root")


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("", "http://127.0.0.1:3128/"),
        ("0.0.0.0:3128", "http://127.0.0.1:3128/"),
        ("127.0.0.1:4000", "http://127.0.0.1:4000/"),
        (":5000", "http://127.0.0.1:5000/"),
        ("6000", "http://127.0.0.1:6000/"),
        ("[::]:3128", "http://[::1]:3128/"),
        ("[fd00::5]:3129", "http://[fd00::5]:3129/"),
        ("proxy.internal", "http://proxy.internal:3128/"),
    ],
)
def test_healthcheck_probes_the_address_the_engine_listens_on(listen: str, url: str) -> None:
    assert healthcheck.target(listen) == url


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    from tests.fixtures.process import free_port

    env = {"PATH": os.environ["PATH"], "LISTEN": f"127.0.0.1:{free_port()}"}
    result = subprocess.run(
        [sys.executable, str(CONTAINER / "healthcheck.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


@needs_root
def test_hand_over_chowns_only_mismatches_and_never_follows_symlinks(tmp_path: Path) -> None:
    volume = tmp_path / "ca"
    (volume / "sub").mkdir(parents=True)
    (volume / "ca.key").write_text("key")
    (volume / "sub" / "owned").write_text("x")
    os.chown(volume / "sub" / "owned", 10001, 10001)
    outside = tmp_path / "outside"
    outside.write_text("not ours")
    (volume / "link").symlink_to(outside)

    changed = entrypoint._hand_over(volume, 10001, 10001)

    for path in (volume, volume / "sub", volume / "ca.key", volume / "sub" / "owned"):
        assert (path.stat().st_uid, path.stat().st_gid) == (10001, 10001), path
    assert os.lstat(volume / "link").st_uid == 10001
    assert outside.stat().st_uid == 0
    assert changed == 4  # volume, sub, ca.key and the link itself; not the file already owned
    assert entrypoint._hand_over(volume, 10001, 10001) == 0


@needs_root
def test_entrypoint_started_as_root_hands_over_the_volumes_then_runs_as_the_appliance_uid(
    tmp_path: Path,
) -> None:
    volume = tmp_path / "docker_mirror_cache"
    volume.mkdir()
    (volume / "left-by-root").write_text("x")
    env = {"PATH": os.environ["PATH"], "APPLIANCE_UID": "10001", "APPLIANCE_VOLUMES": str(volume)}
    result = subprocess.run(
        [
            sys.executable,
            str(CONTAINER / "entrypoint.py"),
            "sh",
            "-c",
            'echo "$(id -u) $(id -g) $(id -G) $HOME"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10001", "10001", "10001", "/var/lib/registry-appliance"]
    assert (volume / "left-by-root").stat().st_uid == 10001
    assert "gave 2 path(s)" in result.stderr


def test_entrypoint_reports_a_missing_command_with_status_127(tmp_path: Path) -> None:
    env = {"PATH": "/nonexistent", "APPLIANCE_UID": "10001", "APPLIANCE_VOLUMES": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(CONTAINER / "entrypoint.py"), "no-such-command"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 127
    assert "cannot run 'no-such-command'" in result.stderr
