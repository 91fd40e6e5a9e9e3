"""Mirror-mode routing: ns first, then a path prefix, then Docker Hub; anything else is a 404."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from appliance.config.model import Config, RegistryConfig, Scheme, docker_hub
from appliance.errors import RegistryError
from appliance.front.mirror import RouteVia, is_bare_ping, path_segment, route

LAB = RegistryConfig(host="lab.test:5000", scheme=Scheme.HTTP)
QUAY = RegistryConfig(host="quay.io")
WITH_HUB = Config(registries=(docker_hub(), QUAY, LAB))
WITHOUT_HUB = Config(registries=(QUAY, LAB))


def test_ns_names_the_registry_and_keeps_its_port() -> None:
    target = route(WITH_HUB, "/v2/team/app/manifests/1.0", {"ns": "lab.test:5000"})
    assert target.registry is LAB
    assert target.via is RouteVia.NAMESPACE
    assert target.path_qs == "/v2/team/app/manifests/1.0"


def test_ns_is_stripped_and_other_query_parameters_pass_on_in_order() -> None:
    query = MultiDict([("n", "10"), ("ns", "quay.io"), ("last", "v1")])
    target = route(WITH_HUB, "/v2/org/tool/tags/list", query)
    assert target.registry is QUAY
    assert target.path_qs == "/v2/org/tool/tags/list?n=10&last=v1"


def test_ns_docker_io_goes_to_docker_hub_through_its_alias() -> None:
    target = route(WITH_HUB, "/v2/library/alpine/blobs/sha256:" + "a" * 64, {"ns": "docker.io"})
    assert target.registry.host == "registry-1.docker.io"
    assert target.path_qs == "/v2/library/alpine/blobs/sha256:" + "a" * 64


def test_ns_with_the_registry_repeated_in_the_path_drops_the_prefix() -> None:
    # containerd with override_path = true and a server URL ending in /v2/lab.test:5000
    target = route(WITH_HUB, "/v2/lab.test:5000/team/app/manifests/1.0", {"ns": "lab.test:5000"})
    assert target.registry is LAB
    assert target.path_qs == "/v2/team/app/manifests/1.0"


def test_ns_naming_an_unconfigured_registry_is_404_name_unknown() -> None:
    with pytest.raises(RegistryError) as caught:
        route(WITH_HUB, "/v2/team/app/manifests/1.0", {"ns": "elsewhere.example"})
    assert caught.value.status == 404
    assert b"NAME_UNKNOWN" in caught.value.body()
    assert b"elsewhere.example" in caught.value.body()


@pytest.mark.parametrize("prefix", ["lab.test:5000", "lab.test_5000"])
def test_path_prefix_routes_with_a_port_written_either_way(prefix: str) -> None:
    target = route(WITHOUT_HUB, f"/v2/{prefix}/team/app/blobs/sha256:" + "b" * 64, {})
    assert target.registry is LAB
    assert target.via is RouteVia.PATH_PREFIX
    assert target.path_qs == "/v2/team/app/blobs/sha256:" + "b" * 64


def test_path_prefix_without_port() -> None:
    target = route(WITHOUT_HUB, "/v2/quay.io/org/tool/manifests/latest", {})
    assert target.registry is QUAY
    assert target.path_qs == "/v2/org/tool/manifests/latest"


def test_path_prefix_docker_io_adds_library_for_official_images() -> None:
    target = route(WITH_HUB, "/v2/docker.io/alpine/manifests/3.20", {})
    assert target.registry.host == "registry-1.docker.io"
    assert target.path_qs == "/v2/library/alpine/manifests/3.20"


def test_unconfigured_path_prefix_is_404() -> None:
    with pytest.raises(RegistryError) as caught:
        route(WITH_HUB, "/v2/ghcr.io/org/tool/manifests/latest", {})
    assert caught.value.status == 404


def test_plain_path_goes_to_docker_hub() -> None:
    target = route(WITH_HUB, "/v2/library/nginx/manifests/latest", {})
    assert target.registry.host == "registry-1.docker.io"
    assert target.via is RouteVia.DEFAULT
    assert target.path_qs == "/v2/library/nginx/manifests/latest"


def test_single_component_docker_hub_name_gets_library() -> None:
    target = route(WITH_HUB, "/v2/nginx/blobs/sha256:" + "c" * 64, {})
    assert target.path_qs == "/v2/library/nginx/blobs/sha256:" + "c" * 64


def test_user_repositories_on_docker_hub_are_left_alone() -> None:
    target = route(WITH_HUB, "/v2/bitnami/redis/tags/list", {"n": "5"})
    assert target.path_qs == "/v2/bitnami/redis/tags/list?n=5"


def test_plain_path_without_docker_hub_configured_is_404() -> None:
    with pytest.raises(RegistryError) as caught:
        route(WITHOUT_HUB, "/v2/library/nginx/manifests/latest", {})
    assert caught.value.status == 404
    assert b"docker.io" in caught.value.body()


def test_bare_ping_is_local_but_a_ping_with_ns_is_routed() -> None:
    assert is_bare_ping("/v2/", {})
    assert is_bare_ping("/v2", {})
    assert not is_bare_ping("/v2/", {"ns": "quay.io"})
    assert route(WITH_HUB, "/v2/", {"ns": "quay.io"}).path_qs == "/v2/"


def test_path_segment_replaces_the_port_colon() -> None:
    assert path_segment("lab.test:5000") == "lab.test_5000"
    assert path_segment("quay.io") == "quay.io"
