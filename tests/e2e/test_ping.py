"""``/v2/``: every pull starts with it, so the appliance takes an upstream's 200 as its answer for
a while instead of a round trip to a distant registry each time; challenges are never reused."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.control.client import ControlClient
from tests.fixtures import ALICE
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import CurlResult, curl
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e


@pytest.fixture
def appliance(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, htpasswd_registry: UpstreamRegistry
) -> Iterator[Appliance]:
    # No credentials for the htpasswd registry: its pings answer 401 with a challenge.
    specs = [
        UpstreamSpec(open_registry.name_port, open_registry.host_port),
        UpstreamSpec(htpasswd_registry.name_port, htpasswd_registry.host_port),
    ]
    with Appliance(tmp_path / "appliance", specs, upstream_ca=pki.ca_file) as running:
        yield running


def _ping(
    appliance: Appliance, registry: UpstreamRegistry, headers: dict[str, str] | None = None
) -> CurlResult:
    return curl(
        f"https://{registry.name_port}/v2/",
        proxy=appliance.url,
        cacert=appliance.cert_dir() / "ca.crt",
        headers=headers,
    )


def _upstream_pings(registry: UpstreamRegistry) -> int:
    return sum(1 for record in registry.requests() if record.path == "/v2/")


def test_an_upstream_ping_answer_serves_the_next_anonymous_pings(
    appliance: Appliance, open_registry: UpstreamRegistry
) -> None:
    open_registry.clear_requests()
    answers = [_ping(appliance, open_registry) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert all(a.headers["docker-distribution-api-version"] == "registry/2.0" for a in answers)
    assert _upstream_pings(open_registry) == 1
    events = [line for line in appliance.events() if " other " in line]
    assert [line.split()[0] for line in events[-3:]] == ["BYPASS", "HIT", "HIT"]


def test_a_ping_with_the_clients_own_credentials_always_goes_upstream(
    appliance: Appliance, open_registry: UpstreamRegistry
) -> None:
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    open_registry.clear_requests()
    for _ in range(2):
        assert _ping(appliance, open_registry, {"Authorization": f"Basic {token}"}).status == 200
    assert _upstream_pings(open_registry) == 2


def test_a_challenge_is_never_reused(appliance: Appliance, htpasswd_registry: UpstreamRegistry) -> None:
    htpasswd_registry.clear_requests()
    answers = [_ping(appliance, htpasswd_registry) for _ in range(2)]
    assert [a.status for a in answers] == [401, 401]
    assert all("basic" in a.headers["www-authenticate"].lower() for a in answers)
    assert _upstream_pings(htpasswd_registry) == 2


def test_a_config_reload_forgets_the_ping_answers(
    appliance: Appliance, open_registry: UpstreamRegistry
) -> None:
    async def reload() -> None:
        async with ControlClient(appliance.control_socket) as client:
            await client.reload()

    open_registry.clear_requests()
    assert _ping(appliance, open_registry).status == 200
    assert _ping(appliance, open_registry).status == 200
    asyncio.run(reload())  # credentials may have changed: what upstream said may no longer hold
    assert _ping(appliance, open_registry).status == 200
    assert _upstream_pings(open_registry) == 2
