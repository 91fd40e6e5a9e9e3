"""Issue 19: per-repository credentials on a registry that answers HTTP Basic.

The upstream is nginx in front of a plain distribution registry (``tests/fixtures/basicfront.py``):
account ``team-a`` may read only ``team-a/*``, ``team-b`` only ``team-b/*``, and ``general`` the
``/v2/`` ping and every other repository.  The appliance holds all three (prefix credentials for the
teams, a registry-level one for ``general``) and clients hold none; nginx's access log says which
account read which repository.  Passwords are canaries that must never show in the engine's log.
"""

from __future__ import annotations

import secrets
import urllib.error
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.basicfront import Area, BasicFront
from tests.fixtures.clients import ClientResult, skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import RegistryFactory

pytestmark = pytest.mark.e2e


@dataclass(frozen=True, slots=True)
class Setup:
    front: BasicFront
    passwords: Mapping[str, str]
    team_a: ImageInfo
    team_b: ImageInfo
    shared: ImageInfo


@pytest.fixture
def setup(
    tmp_path: Path, pki: TestPKI, registry_factory: RegistryFactory, push_test_image: ImagePusher
) -> Iterator[Setup]:
    backend = registry_factory(tls=False)
    team_a = push_test_image(backend, "team-a/app", layer_sizes=(20_000, 10_000))
    team_b = push_test_image(backend, "team-b/app", layer_sizes=(21_000, 11_000))
    shared = push_test_image(backend, "shared/base", layer_sizes=(22_000,))
    passwords = {user: f"canary-{user}-{secrets.token_hex(8)}" for user in ("team-a", "team-b", "general")}
    front = BasicFront(
        tmp_path / "front",
        pki,
        backend,
        users=passwords,
        areas=[Area("team-a", ("team-a",)), Area("team-b", ("team-b",)), Area("", ("general",))],
    )
    front.start()
    try:
        yield Setup(front, passwords, team_a, team_b, shared)
    finally:
        front.stop()


def _credential(scope: str, user: str, passwords: Mapping[str, str]) -> dict[str, str]:
    return {"scope": scope, "username": user, "password": passwords[user]}


def _appliance(tmp_path: Path, pki: TestPKI, setup: Setup, *, registry_level: bool) -> Appliance:
    name = setup.front.name_port
    credentials = [
        _credential(f"{name}/team-a/*", "team-a", setup.passwords),
        _credential(f"{name}/team-b", "team-b", setup.passwords),
    ]
    if registry_level:
        credentials.append(_credential(name, "general", setup.passwords))
    return Appliance(
        tmp_path / "appliance",
        [UpstreamSpec(name, setup.front.host_port)],
        upstream_ca=pki.ca_file,
        extra_credentials=credentials,
    )


def _assert_no_secret(appliance: Appliance, setup: Setup, *outputs: str) -> None:
    text = appliance.log_path.read_text(errors="replace")
    for password in setup.passwords.values():
        assert password not in text
        for output in outputs:
            assert password not in output


def _pull(appliance: Appliance, mode: str, image: ImageInfo, name: str, dest: Path) -> ClientResult:
    """One skopeo pull of ``image`` from the registry called ``name``, through the appliance."""
    source = f"docker://{image.reference(name)}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if mode == "mirror":
        conf = dest.parent / "registries.conf"
        if not conf.exists():
            text = appliance.get("/setup/podman").decode()
            conf.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n\n' + text)
        return skopeo_copy(source, f"dir:{dest}", registries_conf=conf)
    return skopeo_copy(source, f"dir:{dest}", https_proxy=appliance.url, cert_dir=appliance.cert_dir())


@pytest.mark.parametrize("mode", ["mitm", "mirror"])
@pytest.mark.parametrize("registry_level", [True, False], ids=["with-registry-level", "prefix-only"])
def test_each_repository_prefix_is_pulled_with_its_own_basic_account_and_the_rest_with_the_registrys(
    tmp_path: Path, pki: TestPKI, setup: Setup, registry_level: bool, mode: str
) -> None:
    front = setup.front
    name = front.name_port
    with _appliance(tmp_path, pki, setup, registry_level=registry_level) as appliance:
        front.clear_requests()
        outputs = []
        # Twice: the second pull revalidates the cached tags, again with each repository's account.
        for round_number in range(2):
            for image in (setup.team_a, setup.team_b):
                dest = tmp_path / "pulls" / f"{image.repository.replace('/', '_')}-{round_number}"
                result = _pull(appliance, mode, image, name, dest)
                outputs.append(result.output)
                assert result.ok, result.output + appliance.log_text()
                assert result.digest == image.manifest_digest
        assert front.readers("team-a/app") == {"team-a"}
        assert front.readers("team-b/app") == {"team-b"}
        # A repository no prefix covers gets the registry-level account, or none at all.
        shared = _pull(appliance, mode, setup.shared, name, tmp_path / "pulls" / "shared")
        outputs.append(shared.output)
        if registry_level:
            assert shared.ok, shared.output
            assert front.readers("shared/base") == {"general"}
        else:
            # Through the proxy the ping is answered for the registry once, then from the ping cache
            # like a 200; a mirror client pings the appliance itself.
            assert [r.path for r in front.requests()].count("/v2/") == (1 if mode == "mitm" else 0)
            assert not shared.ok
            assert "unauthorized" in shared.stderr.lower(), shared.output
            assert {r.user for r in front.requests() if r.repository == "shared/base"} == {None}
        _assert_no_secret(appliance, setup, *outputs)


def test_a_layer_cached_with_one_teams_account_is_not_served_to_a_repository_whose_account_cannot_read_it(
    tmp_path: Path, pki: TestPKI, setup: Setup
) -> None:
    """Issue 19: content fetched with team-a's account stays with what team-a's account could read."""
    front = setup.front
    name = front.name_port
    with _appliance(tmp_path, pki, setup, registry_level=False) as appliance:
        pulled = _pull(appliance, "mirror", setup.team_a, name, tmp_path / "pulls" / "team-a")
        assert pulled.ok, pulled.output
        layer = setup.team_a.layer_digests[0]
        for repository in ("team-b/app", "shared/base"):
            front.clear_requests()
            path = f"/v2/{repository}/blobs/{layer}?ns={name}"
            with pytest.raises(urllib.error.HTTPError) as refused:
                appliance.get(path)
            # The upstream's answer in that repository (team-b's account is refused, shared/base has
            # none), not the bytes cached through team-a.
            assert refused.value.code in (401, 403, 404), refused.value.code
            assert [r.repository for r in front.requests()] == [repository]
        _assert_no_secret(appliance, setup, pulled.output)
