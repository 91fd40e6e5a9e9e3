"""Image references as users type them."""

import pytest

from appliance.errors import ConfigError
from appliance.registry.references import ImageRef, parse_reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", ImageRef("docker.io", "library/alpine", "latest")),
        ("alpine:3.20", ImageRef("docker.io", "library/alpine", "3.20")),
        ("bitnami/redis:7", ImageRef("docker.io", "bitnami/redis", "7")),
        ("ghcr.io/org/app:v1", ImageRef("ghcr.io", "org/app", "v1")),
        ("registry.test:5000/a/b", ImageRef("registry.test:5000", "a/b", "latest")),
        ("localhost/x@sha256:" + "a" * 64, ImageRef("localhost", "x", "sha256:" + "a" * 64)),
    ],
)
def test_parses_like_docker(text: str, expected: ImageRef) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["", "UPPER/case", "a b", "x@nodigest", "x:-bad"])
def test_rejects_what_docker_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_reference(text)
