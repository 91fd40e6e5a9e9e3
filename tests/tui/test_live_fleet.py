"""The dashboard shows the fleet of a real replica (issue 18 item 6): a real engine with ``[fleet]`` on a
real SeaweedFS bucket; the line appears and counts the lease this replica won for a blob it fetched."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_fleet import get_blob, make_replica, sha256
from tests.fixtures.appliance import Appliance
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.seaweedfs import SeaweedS3
from tests.tui.conftest import make_app, screen_text, wait_for


@pytest.fixture
def replica(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, s3_server: SeaweedS3
) -> Iterator[Appliance]:
    prefix = "tui-" + secrets.token_hex(4)
    appliance = make_replica(tmp_path, pki, open_registry, open_registry.host_port, s3_server, prefix, "a")
    with appliance:
        yield appliance


async def test_the_cache_panel_shows_the_fleet_and_counts_a_won_lease(
    replica: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(50_000,))
    app = make_app(replica.control_socket)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: "Fleet a + 0 others · janitor" in screen_text(app), "the fleet line")
        assert "L2 0 · won 0 · followed 0 (0 B)" in screen_text(app)
        digest = image.layer_digests[0]
        path = f"/v2/{image.repository}/blobs/{digest}?ns={open_registry.name_port}"
        status, body, _ = get_blob(replica, path)
        assert (status, sha256(body)) == (200, digest)
        await wait_for(pilot, lambda: "L2 0 · won 1 · followed 0" in screen_text(app), "the won lease")


async def test_a_single_appliance_shows_no_fleet_line(tmp_path: Path, pki: TestPKI) -> None:
    with Appliance(tmp_path / "single", [], upstream_ca=pki.ca_file) as single:
        app = make_app(single.control_socket)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: app.state.status is not None, "the first status")
            await wait_for(pilot, lambda: "Docker Hub" in screen_text(app), "the cache panel drawn")
            assert "Fleet" not in screen_text(app)
