"""Issue 17.5 and 17.7 acceptance with real clients against a real TLS + htpasswd registry.

The engine holds an upstream account that can read every repository (the confused deputy the issue
is about); the ACL decides who may use it for what:

* bert may pull ``bert/**``; the ``staff`` group (anna, carl, dora) may pull ``team/**``;
* nobody may tunnel anywhere;
* carl may make 3 requests a minute, dora receive 100 000 bytes a second.

Upstream traffic is read from the registry's own access log: a refusal must cost it nothing.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.access.passwords import hash_password
from tests.fixtures import ALICE
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import CurlResult, curl, skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e

PASSWORDS = {
    "anna": "anna-canary-7Hq2",
    "bert": "bert-canary-Zx91",
    "carl": "carl-canary-Pl03",
    "dora": "dora-canary-Wd55",
}
RATE_LIMITED = 3  # carl's requests per minute
BYTE_RATE = 100_000  # dora's bytes per second
MANIFEST_ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


@dataclass
class Guarded:
    appliance: Appliance
    registry: UpstreamRegistry

    def proxy(self, user: str) -> str:
        return f"http://{user}:{PASSWORDS[user]}@127.0.0.1:{self.appliance.port}"

    def get(self, user: str, path: str, **options: object) -> CurlResult:
        """``GET https://REGISTRY{path}`` through the proxy as ``user`` (a CONNECT, then our TLS)."""
        url = f"https://{self.registry.name_port}{path}"
        ca = self.appliance.cert_dir() / "ca.crt"
        return curl(url, proxy=self.proxy(user), cacert=ca, headers=MANIFEST_ACCEPT, **options)  # type: ignore[arg-type]

    def pull(self, user: str, image: ImageInfo, dest: Path) -> tuple[bool, str]:
        result = skopeo_copy(
            f"docker://{image.reference(self.registry.name_port)}",
            f"dir:{dest}",
            https_proxy=self.proxy(user),
            cert_dir=self.appliance.cert_dir(),
            timeout=90,
        )
        return result.ok, result.stderr


@pytest.fixture
def guarded(tmp_path: Path, pki: TestPKI, htpasswd_registry: UpstreamRegistry) -> Iterator[Guarded]:
    access = {
        "enabled": True,
        "users": [
            {"name": name, "password_hash": hash_password(pw, log_n=10)} for name, pw in PASSWORDS.items()
        ],
        "groups": [{"name": "staff", "members": ["anna", "carl", "dora"]}],
        "acl": [
            {"who": "bert", "actions": ["pull"], "repository": "bert/**"},
            {"who": "@staff", "actions": ["pull"], "repository": "team/**"},
        ],
        "limits": [
            {"who": "carl", "requests_per_minute": RATE_LIMITED},
            {"who": "dora", "bytes_per_second": BYTE_RATE},
        ],
    }
    spec = UpstreamSpec(htpasswd_registry.name_port, htpasswd_registry.host_port, credentials=ALICE)
    appliance = Appliance(
        tmp_path / "appliance",
        [spec],
        upstream_ca=pki.ca_file,
        extra_toml={"access": access, "cache": {"pull_ahead": 0}},
        extra_resolve=[f"elsewhere.test:443=127.0.0.1:{htpasswd_registry.host_port.rpartition(':')[2]}"],
    )
    with appliance:
        yield Guarded(appliance, htpasswd_registry)
        text = appliance.log_text() + appliance.get("/metrics").decode()
        assert not any(password in text for password in PASSWORDS.values())


def _decisions(metrics: bytes) -> dict[str, float]:
    found = re.findall(rb'appliance_auth_decisions_total\{result="(\w+)"\} (\S+)', metrics)
    return {result.decode(): float(value) for result, value in found}


def test_a_user_cannot_pull_anothers_private_repository_even_when_it_is_cached_and_the_upstream_hears_nothing(
    tmp_path: Path, guarded: Guarded, push_test_image: ImagePusher
) -> None:
    registry = guarded.registry
    private = push_test_image(registry, "bert/private", layer_sizes=(20_000, 10_000))
    never_pulled = push_test_image(registry, "bert/unpulled", layer_sizes=(5_000,))
    ok, stderr = guarded.pull("bert", private, tmp_path / "bert")
    assert ok, stderr  # bert fills the cache with his repository

    registry.clear_requests()
    ok, stderr = guarded.pull("anna", private, tmp_path / "anna")
    assert not ok
    assert "denied" in stderr.lower()
    assert PASSWORDS["anna"] not in stderr
    assert registry.requests() == []  # nothing upstream on anna's behalf

    # The same refusal for content the cache holds and content it does not; blobs too.
    cached = guarded.get("anna", f"/v2/bert/private/manifests/{private.tag}")
    uncached = guarded.get("anna", f"/v2/bert/unpulled/manifests/{never_pulled.tag}")
    blob = guarded.get("anna", f"/v2/bert/private/blobs/{private.layer_digests[0]}")
    assert cached.status == uncached.status == blob.status == 403
    assert cached.body.replace(b"bert/private", b"X") == uncached.body.replace(b"bert/unpulled", b"X")
    assert b'"code":"DENIED"' in cached.body.replace(b" ", b"")
    assert registry.requests() == []

    # Through a repository anna may read, bert's cached layer is not hers either: that repository
    # is not linked to it, so the upstream is asked there (one HEAD, in team/, none in bert/).
    borrowed = guarded.get("anna", f"/v2/team/borrow/blobs/{private.layer_digests[0]}")
    assert borrowed.status == 404 and len(borrowed.body) < 1000
    asked = registry.requests()
    assert [(r.method, r.repository) for r in asked] == [("HEAD", "team/borrow")]
    registry.clear_requests()

    ok, stderr = guarded.pull("bert", private, tmp_path / "bert-again")
    assert ok, stderr  # bert still can

    lines = guarded.appliance.events()
    # Every request anna made in bert's repositories was refused; her /v2/ ping names none.
    denied = [
        line for line in lines if "identity=anna" in line and " registry.test" in line and "/bert/" in line
    ]
    assert len(denied) >= 4 and all("access=denied (no access rule allows it)" in line for line in denied)
    assert any("identity=bert access=allowed" in line for line in lines)
    decisions = _decisions(guarded.appliance.get("/metrics"))
    assert decisions["denied"] == len(denied)
    assert decisions["allowed"] == len([line for line in lines if "access=allowed" in line])
    assert decisions["limited"] == 0


def test_a_tunnel_to_a_host_no_rule_allows_is_refused_before_anything_is_dialled(guarded: Guarded) -> None:
    refused = curl("https://elsewhere.test/", proxy=guarded.proxy("anna"), timeout=10)
    assert refused.status == 0 and "403" in refused.stderr
    lines = guarded.appliance.events()
    assert any("CONNECT" in line and "elsewhere.test" in line and "access=denied" in line for line in lines)
    assert _decisions(guarded.appliance.get("/metrics"))["denied"] == 1


def test_over_the_request_rate_a_client_gets_429_with_retry_after_and_the_upstream_nothing(
    guarded: Guarded, push_test_image: ImagePusher
) -> None:
    image = push_test_image(guarded.registry, "team/app", layer_sizes=(2_000,))
    path = f"/v2/team/app/manifests/{image.tag}"
    answers = [guarded.get("carl", path) for _ in range(RATE_LIMITED)]
    assert [answer.status for answer in answers] == [200] * RATE_LIMITED
    guarded.registry.clear_requests()
    over = guarded.get("carl", path)
    assert over.status == 429
    assert b"TOOMANYREQUESTS" in over.body
    assert 1 <= int(over.headers["retry-after"]) <= 60 // RATE_LIMITED
    assert guarded.registry.requests() == []
    assert guarded.get("anna", path).status == 200  # another identity, another budget
    assert any("identity=carl access=limited" in line for line in guarded.appliance.events())
    assert _decisions(guarded.appliance.get("/metrics"))["limited"] == 1


def test_a_byte_rate_paces_a_blob_instead_of_cutting_it(
    guarded: Guarded, push_test_image: ImagePusher
) -> None:
    image = push_test_image(guarded.registry, "team/big", layer_sizes=(400_000,))
    digest = image.layer_digests[0]
    path = f"/v2/team/big/blobs/{digest}"
    assert guarded.get("anna", path).status == 200  # cached at full speed
    started = time.monotonic()
    paced = guarded.get("dora", path, timeout=30)
    took = time.monotonic() - started
    assert paced.status == 200
    size = len(paced.body)
    assert size > 3 * BYTE_RATE
    assert "sha256:" + hashlib.sha256(paced.body).hexdigest() == digest
    # A second's worth at once (the bucket starts full), the rest at the rate.
    assert took >= (size - BYTE_RATE) / BYTE_RATE * 0.9
