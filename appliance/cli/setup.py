"""``appliance setup containerd|docker|podman|systemd``: print a client's configuration.

The same text ``GET /setup/<kind>`` serves, for the configured registries.  Without ``--address``
the appliance's listen address is used, with this machine's name in place of a wildcard host.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

from appliance.config.model import Config
from appliance.errors import ConfigError
from appliance.front.setup_scripts import SetupKind, render_setup, valid_address

_HELP = {
    SetupKind.CONTAINERD: "hosts.toml files for containerd, Kubernetes nodes, k3s, nerdctl (mirror mode)",
    SetupKind.DOCKER: "daemon.json registry-mirrors fragment (mirror mode, Docker Hub only)",
    SetupKind.PODMAN: "registries.conf fragment for podman, CRI-O, skopeo, buildah (mirror mode)",
    SetupKind.SYSTEMD: "script pointing a systemd service at the proxy and trusting the CA (MITM mode)",
}
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``setup`` and its subcommands to the ``appliance`` parser's subcommands."""
    setup = subparsers.add_parser(
        "setup", help="print client configuration", description="Print a client's configuration."
    )
    kinds = setup.add_subparsers(dest="subcommand", metavar="CLIENT", required=True)
    for kind in SetupKind:
        sub = kinds.add_parser(kind.value, help=_HELP[kind], description=_HELP[kind])
        sub.add_argument(
            "--address",
            metavar="HOST:PORT",
            help="how clients reach the appliance (default: the listen address, with this host's name)",
        )
        sub.add_argument("--config", metavar="FILE", type=Path, help="TOML configuration file")
        sub.set_defaults(handler=_setup, setup_kind=kind)


def default_address(config: Config) -> str:
    """The listen address as a client would dial it: a wildcard host becomes this machine's name."""
    host = config.listen_host
    if host in _WILDCARD_HOSTS:
        host = socket.getfqdn() or "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{config.listen_port}"


def _setup(args: argparse.Namespace) -> int:
    from appliance.config.load import load_config

    result = load_config(None, os.environ, args.config)
    for warning in result.warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    address: str = args.address or default_address(result.config)
    if not valid_address(address):
        raise ConfigError("--address", f"invalid address {address!r}: expected HOST:PORT")
    kind: SetupKind = args.setup_kind
    sys.stdout.write(render_setup(kind, address, result.config.registries).text)
    if kind is SetupKind.DOCKER:
        print(
            "appliance: Docker sends only Docker Hub pulls to a mirror; use MITM mode"
            " (appliance setup systemd) for other registries",
            file=sys.stderr,
        )
    return 0
