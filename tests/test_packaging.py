"""The wheel: every non-Python file the packages read at run time is in it, and the dashboard starts
from a wheel installed in a fresh virtualenv (not from this source tree).

One wheel is built per run from a clean copy of the sources (a stale ``build/`` in the work tree
would otherwise lend the wheel files the package data no longer names), with ``--no-deps``; the
fresh venv gets only the wheel, and finds its dependencies in the test venv's site-packages
through a ``.pth`` line, so nothing is downloaded for it.  Building needs the build backend named in
pyproject.toml, which pip takes from its cache or the package registry.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("appliance", "tui")


def _non_python_files() -> list[str]:
    """Every file under the packages that is not a module, as a wheel would name it."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                found.append(path.relative_to(ROOT).as_posix())
    return found


def _css_paths() -> list[str]:
    """Stylesheets Textual apps load at run time (``CSS_PATH = "..."``), relative to their module."""
    found = []
    for package in PACKAGES:
        for module in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "CSS_PATH" for t in node.targets)
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                ):
                    found.append((module.parent / node.value.value).relative_to(ROOT).as_posix())
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel_file,) = out.glob("*.whl")
    return wheel_file


def test_every_non_python_file_of_the_packages_is_in_the_wheel(wheel: Path) -> None:
    wanted = _non_python_files()
    assert "tui/app.tcss" in wanted  # the scan sees the stylesheet, so an empty list cannot pass
    assert set(_css_paths()) <= set(wanted), "a CSS_PATH names a file that does not exist"

    names = set(zipfile.ZipFile(wheel).namelist())

    assert [name for name in wanted if name not in names] == []


def test_the_dashboard_starts_headless_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # Dependencies from the test venv, after the wheel's own packages on sys.path.
    (Path(site) / "test-venv-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        import appliance, tui
        from tui.app import DashboardApp

        for module in (appliance, tui):
            assert Path(module.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), module.__file__

        async def main() -> None:
            app = DashboardApp(Path(sys.argv[1]), retry_interval=0.05)
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.pause()
                print("screen", type(app.screen).__name__)
                print("rules", len(app.stylesheet.rules))

        asyncio.run(main())
        """
    )
    # -I: neither this source tree (the cwd) nor PYTHONPATH may lend it the packages.
    started = subprocess.run(
        [str(python), "-I", "-c", script, str(tmp_path / "no-engine.sock")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert started.returncode == 0, started.stdout + started.stderr
    assert "Traceback" not in started.stderr
    lines = dict(line.split(" ", 1) for line in started.stdout.splitlines())
    assert lines["screen"] in ("DashboardScreen", "DisconnectedScreen")
    assert int(lines["rules"]) > 0

    version = subprocess.run(
        [str(venv / "bin" / "appliance"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("appliance"), version.stdout + version.stderr
