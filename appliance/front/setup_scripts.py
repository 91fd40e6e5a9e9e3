"""Client set-up snippets served over HTTP (``/setup/...``) and printed by ``appliance setup``.

Pure text generators: ``systemd_script`` for MITM mode (``HTTPS_PROXY`` plus the CA), and the
mirror-mode files for containerd (``hosts.toml``), Docker (``daemon.json``) and podman/CRI-O
(``registries.conf``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from appliance.config.model import DOCKER_HUB_HOST, RegistryConfig, Scheme
from appliance.front.mirror import DOCKER_HUB_NAME, path_segment


def systemd_script(base_url: str, service: str = "docker") -> str:
    """A shell script that points a systemd-managed daemon at the proxy and trusts its CA.

    ``base_url`` is how the client reached the appliance (``http://host:3128``), so the script
    configures itself with that address, as the seed's ``/setup/systemd`` does.
    """
    return f"""#!/bin/sh
# Configure {service} to pull through the registry appliance at {base_url}
set -eu
mkdir -p /etc/systemd/system/{service}.service.d
cat > /etc/systemd/system/{service}.service.d/http-proxy.conf <<'EOD'
[Service]
Environment="HTTP_PROXY={base_url}/"
Environment="HTTPS_PROXY={base_url}/"
EOD
# Trust the appliance's CA.
if command -v update-ca-certificates >/dev/null 2>&1; then
  curl -fsS {base_url}/ca.crt > /usr/local/share/ca-certificates/registry-appliance.crt
  update-ca-certificates
elif command -v update-ca-trust >/dev/null 2>&1; then
  curl -fsS {base_url}/ca.crt > /etc/pki/ca-trust/source/anchors/registry-appliance.crt
  update-ca-trust extract
else
  echo "cannot find update-ca-certificates or update-ca-trust: install {base_url}/ca.crt by hand" >&2
  exit 1
fi
systemctl daemon-reload
systemctl restart {service}.service
"""


# -- mirror mode -------------------------------------------------------------------------------------
#
# ``address`` below is ``HOST:PORT`` as clients reach the appliance's plain-HTTP listen port.  Mirror
# mode needs no CA: the client talks plain HTTP to the appliance, which talks TLS upstream.

CONTAINERD_CERTS_D = "/etc/containerd/certs.d"
DEFAULT_HOSTS_DIR = "_default"


@dataclass(frozen=True, slots=True)
class SetupFile:
    """One client configuration file: where it goes (relative to its directory) and what it holds."""

    path: str
    content: str


def client_name(registry: RegistryConfig) -> str:
    """The name clients use for ``registry`` (``docker.io`` for Docker Hub)."""
    return DOCKER_HUB_NAME if registry.host == DOCKER_HUB_HOST else registry.host


def upstream_url(registry: RegistryConfig) -> str:
    return f"{registry.scheme.value}://{registry.host}"


def _mirror_host_block(address: str) -> list[str]:
    return [
        f"[host.{_quote('http://' + address)}]",
        '  capabilities = ["pull", "resolve"]',
    ]


def containerd_hosts(address: str, registries: Sequence[RegistryConfig]) -> tuple[SetupFile, ...]:
    """``hosts.toml`` files for containerd's ``config_path`` directory (``/etc/containerd/certs.d``).

    ``_default`` sends every registry to the appliance first: it answers unconfigured ones with a
    fast 404 and containerd falls back to the registry itself.  Per-registry files name the real
    upstream as ``server`` (containerd would otherwise guess ``https://docker.io`` for Docker Hub).
    containerd appends ``?ns=<registry>`` to each request, which is how the appliance routes it.
    """
    header = f"# Pull through the registry appliance at {address} (mirror mode), then the registry itself."
    default = "\n".join([header, *_mirror_host_block(address)]) + "\n"
    files = [SetupFile(f"{DEFAULT_HOSTS_DIR}/hosts.toml", default)]
    for registry in registries:
        lines = [header, f"server = {_quote(upstream_url(registry))}", "", *_mirror_host_block(address)]
        files.append(SetupFile(f"{client_name(registry)}/hosts.toml", "\n".join(lines) + "\n"))
    return tuple(files)


def containerd_script(address: str, registries: Sequence[RegistryConfig]) -> str:
    """A shell script writing :func:`containerd_hosts` under ``$CERTS_D`` (default /etc/containerd/certs.d).

    containerd reads ``hosts.toml`` on every pull, so nothing needs restarting.
    """
    parts = [
        "#!/bin/sh",
        f"# Point containerd (Kubernetes, k3s, nerdctl, BuildKit) at the registry appliance at {address}",
        "# in mirror mode: plain HTTP to the appliance, no CA to install.",
        "# containerd 2.x reads /etc/containerd/certs.d by default; containerd 1.x needs, in",
        "# /etc/containerd/config.toml (then restart containerd once):",
        '#   [plugins."io.containerd.grpc.v1.cri".registry]',
        f'#     config_path = "{CONTAINERD_CERTS_D}"',
        f"# ctr needs --hosts-dir {CONTAINERD_CERTS_D}.",
        "set -eu",
        f'CERTS_D="${{CERTS_D:-{CONTAINERD_CERTS_D}}}"',
    ]
    for setup_file in containerd_hosts(address, registries):
        directory = setup_file.path.rsplit("/", 1)[0]
        parts += [
            f'mkdir -p "$CERTS_D/{directory}"',
            f"cat > \"$CERTS_D/{setup_file.path}\" <<'EOF'",
            setup_file.content.rstrip("\n"),
            "EOF",
        ]
    parts.append('echo "containerd now pulls through ' + address + ' (files in $CERTS_D)"')
    return "\n".join(parts) + "\n"


def docker_daemon_json(address: str) -> str:
    """The ``/etc/docker/daemon.json`` fragment for Docker's ``registry-mirrors``.

    Docker only ever sends Docker Hub pulls to a mirror; other registries need MITM mode
    (``HTTPS_PROXY`` and the appliance's CA, ``/setup/systemd``).
    """
    return json.dumps({"registry-mirrors": [f"http://{address}"]}, indent=2) + "\n"


def podman_registries_conf(address: str, registries: Sequence[RegistryConfig]) -> str:
    """A ``registries.conf`` fragment (podman, CRI-O, skopeo, buildah) with the appliance as mirror.

    The mirror ``location`` carries the registry as a path prefix; a port is written ``host_PORT``
    because a ``:`` is not allowed there.
    """
    lines = [
        f"# Pull through the registry appliance at {address} (mirror mode; plain HTTP, no CA).",
        "# Save as /etc/containers/registries.conf.d/50-registry-appliance.conf (podman, CRI-O, skopeo,",
        "# buildah); if a registry also has an entry in registries.conf, merge the mirror into it.",
    ]
    for registry in registries:
        name = client_name(registry)
        lines += ["", "[[registry]]", f"prefix = {_quote(name)}", f"location = {_quote(name)}"]
        if registry.scheme is Scheme.HTTP:
            lines.append("insecure = true")
        lines += [
            "",
            "[[registry.mirror]]",
            f"location = {_quote(address + '/' + path_segment(name))}",
            "insecure = true",
        ]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    # A TOML basic string: JSON's escaping is a subset of it.
    return json.dumps(value)


# -- one entry point for ``GET /setup/<kind>`` and ``appliance setup <kind>`` --------------------------


class SetupKind(StrEnum):
    SYSTEMD = "systemd"  # MITM mode: HTTPS_PROXY and the CA, for a systemd-managed docker
    CONTAINERD = "containerd"
    DOCKER = "docker"
    PODMAN = "podman"


@dataclass(frozen=True, slots=True)
class SetupDocument:
    text: str
    content_type: str


_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$")


def valid_address(address: str) -> bool:
    """``HOST[:PORT]`` with nothing a shell or TOML file could misread (it is pasted into both)."""
    return _ADDRESS.match(address) is not None


def render_setup(kind: SetupKind, address: str, registries: Sequence[RegistryConfig]) -> SetupDocument:
    """The configuration for ``kind``; ``address`` must pass :func:`valid_address` (ValueError otherwise)."""
    if not valid_address(address):
        raise ValueError(f"invalid appliance address {address!r}: expected HOST:PORT")
    if kind is SetupKind.SYSTEMD:
        return SetupDocument(systemd_script(f"http://{address}"), "text/x-shellscript")
    if kind is SetupKind.CONTAINERD:
        return SetupDocument(containerd_script(address, registries), "text/x-shellscript")
    if kind is SetupKind.DOCKER:
        return SetupDocument(docker_daemon_json(address), "application/json")
    return SetupDocument(podman_registries_conf(address, registries), "application/toml")
