"""Content a client fetched with its own upstream credential (passed through) is linked for that
credential only: another client is served it after its own upstream check answers 200 (issue 17.5).

The upstream asks for Basic credentials and the appliance has none of its own at first: only a
client that brings the right ones gets anything from it.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path

from appliance.cache.blobs import INDEX_FILE
from appliance.config.model import Credential, Secret
from tests.fixtures.counting_upstream import OCI_MANIFEST, Auth, CountingUpstream
from tests.fixtures.registry_proxy import ProxyUnderTest

USER, PASSWORD = "alice", "alice-test-password"
GOOD = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
WRONG = {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}
ACCEPT = {"Accept": OCI_MANIFEST}


async def test_passed_through_content_reaches_another_client_only_after_its_own_check(tmp_path: Path) -> None:
    async with CountingUpstream(auth=Auth.BASIC) as upstream, ProxyUnderTest(upstream, tmp_path) as proxy:
        image = upstream.add_image("private/app", "v1", layers=(b"secret layer bytes",))
        layer = image.layer_digests[0]
        manifest = f"/v2/private/app/manifests/{image.manifest.digest}"
        blob = f"/v2/private/app/blobs/{layer}"
        tag = "/v2/private/app/manifests/v1"

        # The owner of the credential fetches: tag, manifest by digest, blob.
        for path in (tag, manifest, blob):
            response, _ = await proxy.get(path, headers={**GOOD, **ACCEPT})
            assert response.status == 200, path
        assert upstream.count("GET", blob) == 1

        # Someone else, without credentials or with wrong ones: the upstream is asked on their
        # behalf (and refuses), and the cached bytes are not served.
        for headers in ({}, WRONG):
            upstream.clear()
            for path in (tag, manifest, blob):
                response, body = await proxy.get(path, headers={**headers, **ACCEPT})
                assert response.status == 401, (path, headers)
                assert b"secret layer bytes" not in body
            assert upstream.count() >= 3 and all(
                r.authorization == headers.get("Authorization") for r in upstream.requests
            )

        # The owner again: served from the cache with nothing upstream (its link holds for it).
        upstream.clear()
        response, body = await proxy.get(blob, headers=GOOD)
        assert response.status == 200 and body == b"secret layer bytes"
        response, _ = await proxy.get(manifest, headers={**GOOD, **ACCEPT})
        assert response.status == 200
        assert upstream.count() == 0

        # The appliance gets an account of its own: a client without credentials is served once
        # the upstream answers its check (a HEAD), the bytes from the cache (no second GET).
        proxy.reconfigure_config(
            credentials=(Credential(scope=proxy.registry.host, username=USER, password=Secret(PASSWORD)),)
        )
        upstream.clear()
        response, body = await proxy.get(blob)
        assert response.status == 200 and body == b"secret layer bytes"
        assert upstream.count("HEAD", blob) == 1 and upstream.count("GET", blob) == 0

    # What the index keeps names the credential by a keyed hash, never the credential itself.
    rows = await asyncio.to_thread(_passthrough_rows, tmp_path / INDEX_FILE)
    assert rows and all(PASSWORD not in row[0] and GOOD["Authorization"] not in row[0] for row in rows)


def _passthrough_rows(path: Path) -> list[tuple[str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT credential FROM passthrough_links").fetchall()
