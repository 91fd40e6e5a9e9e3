"""Image references as users type them: ``[registry/]repository[:tag][@digest]``."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config.model import DOCKER_HUB_ALIASES
from appliance.errors import ConfigError
from appliance.oci import is_tag

DOCKER_HUB = "docker.io"


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str  # as typed (docker.io for Docker Hub); resolve with Config.registry_for
    repository: str
    reference: str  # tag or digest

    def __str__(self) -> str:
        sep = "@" if ":" in self.reference else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


def parse_reference(text: str, *, default_tag: str | None = "latest") -> ImageRef:
    """Docker's rules: the first component is a registry if it has a dot or colon or is localhost."""
    value = text.strip()
    if not value or any(c.isspace() for c in value):
        raise ConfigError(text, "not an image reference")
    digest = None
    if "@" in value:
        value, digest = value.split("@", 1)
        if ":" not in digest:
            raise ConfigError(text, f"{digest!r} is not a digest (algorithm:hex)")
    first, _, rest = value.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), rest
    else:
        registry, path = DOCKER_HUB, value
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not is_tag(tag):
            raise ConfigError(text, f"{tag!r} is not a valid tag")
    if registry in DOCKER_HUB_ALIASES and "/" not in path:
        path = f"library/{path}"
    if not path or path != path.lower():
        raise ConfigError(text, "repository names are lower case")
    reference = digest or tag or default_tag
    if reference is None:
        raise ConfigError(text, "needs a tag or a digest")
    return ImageRef(registry, path, reference)
