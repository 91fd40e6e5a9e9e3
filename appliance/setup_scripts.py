"""Client set-up snippets served over HTTP (``/setup/...``) and printed by ``appliance setup``."""

from __future__ import annotations


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
