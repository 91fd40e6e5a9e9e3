"""A one-line account of who may connect and what access control says (``appliance config check``)."""

from __future__ import annotations

from appliance.access.network import PRIVATE_NETWORKS, client_floor
from appliance.config.model import Config


def describe(config: Config) -> str:
    floor = client_floor(config.allow_clients, config.access.enabled)
    if floor.networks == PRIVATE_NETWORKS:
        who = "private networks only (loopback, RFC 1918, 100.64/10, link-local, ULA)"
    else:
        who = ", ".join(str(network) for network in floor.networks)
    access = config.access
    counts = (
        f"{len(access.users)} users, {len(access.groups)} groups, {len(access.tokens)} tokens, "
        f"{len(access.clients)} CIDR identities, {len(access.acl)} rules"
    )
    state = "on (no matching rule denies)" if access.enabled else "off"
    return f"connections from {who}; access control {state}: {counts}"
