"""``appliance tui``: the flags, and one clear line when Textual is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.cli.main import build_parser
from appliance.cli.tui import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[2]


def test_tui_subcommand_takes_socket_and_config() -> None:
    args = build_parser().parse_args(["tui", "--socket", "/run/a.sock", "--config", "/etc/a.toml"])
    assert args.socket == Path("/run/a.sock") and args.config == Path("/etc/a.toml")


def test_without_textual_the_command_says_how_to_install_it_in_one_line() -> None:
    script = (
        "import sys\n"
        "sys.modules['textual'] = None  # as if the extra were not installed\n"
        "from appliance.cli.main import main\n"
        "sys.exit(main(['tui', '--socket', '/nonexistent.sock']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and INSTALL_HINT in lines[0]
    assert "Traceback" not in result.stderr
