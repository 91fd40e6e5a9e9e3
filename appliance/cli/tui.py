"""``appliance tui [--socket PATH] [--config FILE]``: start the dashboard (the optional ``tui`` extra).

Textual is imported only when the command runs, so the engine and the other commands never load it;
without it the command says in one line how to install it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'registry-appliance[tui]'"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", type=Path, help="the engine's control socket")
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML file the engine runs with")


def _run(args: argparse.Namespace) -> int:
    try:
        import textual  # noqa: F401  (only to tell a missing extra from a broken dashboard)
    except ImportError:
        print(f"appliance: the dashboard needs Textual: {INSTALL_HINT}", file=sys.stderr)
        return 1
    from tui.__main__ import run

    result: int = run(args)
    return result


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tui", help="the live dashboard (needs the tui extra)", description="The live dashboard."
    )
    _arguments(parser)
    parser.set_defaults(handler=_run)
