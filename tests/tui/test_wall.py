"""The engine/UI wall: the engine never loads Textual, and the dashboard uses only the protocol and its
client from the engine package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_FROM_ENGINE = {"appliance", "appliance.protocol", "appliance.control.client"}
# Loaded on the way to the client; its __init__ imports nothing (tests/protocol/test_codec.py checks that).
PARENT_PACKAGES = {"appliance.control"}


def _allowed(name: str) -> bool:
    # The protocol is a package: its submodules are the protocol too.
    return name in ALLOWED_FROM_ENGINE or name.startswith("appliance.protocol.")


def _engine_modules() -> list[str]:
    package = ROOT / "appliance"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_every_engine_module_and_running_help_never_loads_textual() -> None:
    modules = _engine_modules()
    assert "appliance.engine" in modules and "appliance.cli.tui" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from appliance.cli.main import build_parser\n"
        "build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'tui')))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the engine loaded: {result.stdout}"

    script = (
        "import sys, runpy\n"
        "sys.argv = ['appliance', 'run', '--help']\n"
        "try:\n"
        "    runpy.run_module('appliance', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('LOADED:' + ','.join(m for m in sys.modules if m == 'textual' or m.startswith('textual.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "--listen" in result.stdout  # it did print the run command's help
    assert result.stdout.strip().endswith("LOADED:"), result.stdout[-500:]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "appliance")
    return found


def test_the_dashboard_imports_only_the_protocol_and_its_client_from_the_engine() -> None:
    files = sorted((ROOT / "tui").rglob("*.py"))
    assert len(files) > 10
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if (name == "appliance" or name.startswith("appliance.")) and not _allowed(name)
    }
    assert not offenders


def test_at_run_time_the_dashboard_loads_no_other_engine_module() -> None:
    script = (
        "import sys\n"
        "import tui.app, tui.__main__\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('appliance'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.strip().split(","))
    assert all(_allowed(name) or name in PARENT_PACKAGES for name in loaded) and ALLOWED_FROM_ENGINE <= loaded
