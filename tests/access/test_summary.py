"""The one-line account ``appliance config check`` prints about the floor and access control."""

from __future__ import annotations

import ipaddress

from appliance.access.summary import describe
from appliance.config.access import AccessConfig
from appliance.config.model import Config


def test_config_check_says_who_may_connect_and_whether_access_control_is_on() -> None:
    assert describe(Config()).startswith("connections from private networks only")
    assert "access control off" in describe(Config())
    narrowed = Config(allow_clients=(ipaddress.ip_network("10.1.0.0/16"),), access=AccessConfig(enabled=True))
    assert describe(narrowed).startswith("connections from 10.1.0.0/16;")
    assert "access control on (no matching rule denies)" in describe(narrowed)
