"""Where the control socket is, and the command that starts the engine (no Textual, no engine imports).

The engine's own default is ``$XDG_DATA_HOME/registry-appliance/control.sock``; with ``--config FILE``
the dashboard uses that file's ``control_socket`` key, as the engine would.  The TOML is read with the
standard library so the dashboard needs nothing of the engine but the protocol and its client.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "registry-appliance"


class SettingsError(ValueError):
    """The config file named on the command line cannot be read."""


def default_socket(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local/share")
    return Path(base) / APP_NAME / "control.sock"


def default_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / APP_NAME / "config.toml"


def _socket_from_config(path: Path) -> Path | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    value = data.get("control_socket")
    if not isinstance(value, str) or not value:
        return None
    socket = Path(value).expanduser()
    return socket if socket.is_absolute() else path.parent / socket


def resolve_socket(socket: Path | None, config: Path | None, environ: Mapping[str, str]) -> Path:
    """``--socket``, else ``control_socket`` of ``--config`` (or of the default config file), else default."""
    if socket is not None:
        return socket
    if config is not None:
        return _socket_from_config(config) or default_socket(environ)
    implicit = default_config_path(environ)
    if implicit.is_file():
        try:
            found = _socket_from_config(implicit)
        except SettingsError:
            found = None
        if found is not None:
            return found
    return default_socket(environ)


def start_command(config: Path | None, socket: Path | None) -> str:
    """What to type to start the engine this dashboard looks for."""
    words = ["appliance", "run"]
    if config is not None:
        words += ["--config", str(config)]
    if socket is not None:
        words += ["--control-socket", str(socket)]
    return shlex.join(words)
