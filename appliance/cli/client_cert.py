"""``appliance client-cert issue NAME --out DIR``: a client certificate naming an identity.

The certificate comes from the appliance's client CA (``ca_dir/client-ca.crt``, created on first
use) and is what a mirror client that cannot send a password presents on the TLS listener: Docker
Engine reads ``/etc/docker/certs.d/HOST:PORT/client.cert`` and ``client.key``, skopeo and podman
take the same directory as ``--cert-dir``, curl takes ``--cert``/``--key``.  The directory also
gets the appliance's CA as ``ca.crt``, so the client trusts the listener's certificate.

Runs without an engine: it needs only the CA directory (from ``--config``, the environment or
``--ca-dir``).  A running engine picks a newly created client CA up at its next start.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path
from typing import Any

from appliance.config.load import Overrides, load_config
from appliance.errors import ConfigError

EXIT_OK = 0
EXIT_USAGE = 2


def issue(args: argparse.Namespace) -> int:
    from appliance.front import client_ca
    from appliance.front.ca import CertificateAuthority

    try:
        result = load_config(Overrides(ca_dir=args.ca_dir), os.environ, args.config)
        config = result.config
        days = int(args.days)
        if not 1 <= days <= 3650:
            raise ConfigError("--days", "between 1 and 3650")
        created = not client_ca.client_ca_paths(config.ca_dir)[0].exists()
        ca = client_ca.load_or_create(config.ca_dir)
        server_ca = CertificateAuthority.load_or_create(config.ca_cert_path, config.ca_key_path)
        issued = client_ca.issue(ca, args.name, lifetime=datetime.timedelta(days=days))
        written = client_ca.write_bundle(issued, args.out, server_ca.cert_pem)
    except ConfigError as exc:
        print(f"appliance: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"appliance: error: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if created:
        print(f"created the client CA {ca.cert_path} (restart the engine so its TLS listener trusts it)")
    not_after = issued.certificate.not_valid_after_utc
    print(f"issued a client certificate for {issued.name}, valid until {not_after:%Y-%m-%d}:")
    for path in written:
        print(f"  {path}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "client-cert", help="client certificates naming an identity (mirror clients on the TLS listener)"
    )
    commands = group.add_subparsers(
        dest="client_cert_command", metavar="SUBCOMMAND", required=True, parser_class=type(group)
    )
    help_text = "issue a certificate for identity NAME from the client CA into DIR (client.cert, client.key)"
    parser = commands.add_parser("issue", help=help_text, description=help_text)
    parser.add_argument("name", help="the identity it names (a user's or a robot's name)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write into")
    parser.add_argument("--days", default="365", help="validity in days (default 365)")
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML configuration file")
    parser.add_argument("--ca-dir", metavar="DIR", help="the CA directory (default: from the configuration)")
    parser.set_defaults(handler=issue)
