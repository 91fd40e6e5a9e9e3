"""``python -m tui [--socket PATH] [--config FILE]``: the same as ``appliance tui``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tui.settings import SettingsError, resolve_socket, start_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", type=Path, help="the engine's control socket")
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML file the engine runs with")


def run(args: argparse.Namespace) -> int:
    try:
        socket = resolve_socket(args.socket, args.config, os.environ)
    except SettingsError as exc:
        print(f"appliance: error: {exc}", file=sys.stderr)
        return 2
    from tui.app import DashboardApp

    app = DashboardApp(socket, start_command=start_command(args.config, args.socket))
    app.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui", description="The registry-appliance dashboard.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
