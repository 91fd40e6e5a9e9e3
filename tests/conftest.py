"""Shared pytest fixtures; the components themselves live in ``tests/fixtures``.

Registries are session-scoped (starting one costs ~0.1 s, but many tests use them): tests keep out
of each other's way by pushing to their own repositories (``push_test_image`` names them after the
test) and by filtering ``requests()`` by repository.  A test that stops or restarts a registry must
use ``registry_factory`` for its own instance.
"""

from __future__ import annotations

import itertools
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# `tests.fixtures` must import however pytest was started (rootdir-relative or `python -m pytest`).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fixtures import ALICE, BOB, PUBLIC_PREFIX  # noqa: E402
from tests.fixtures.containerd import PrivateContainerd  # noqa: E402
from tests.fixtures.images import ImageInfo, ImagePusher, push_image  # noqa: E402
from tests.fixtures.pki import TestPKI, make_pki  # noqa: E402
from tests.fixtures.registry import RegistryAuth, RegistryFactory, UpstreamRegistry  # noqa: E402
from tests.fixtures.seaweedfs import SeaweedS3, start_seaweedfs  # noqa: E402
from tests.fixtures.tokenserver import Grant, TokenServer  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One real SeaweedFS S3 for the session; tests keep apart by key prefix (``fleet_config()``)."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _registry_factory(base: Path, pki: TestPKI, started: list[UpstreamRegistry]) -> RegistryFactory:
    counter = itertools.count()

    def make(*, tls: bool = True, **kwargs: Any) -> UpstreamRegistry:
        registry = UpstreamRegistry(base / f"registry-{next(counter)}", pki if tls else None, **kwargs)
        started.append(registry)
        registry.start()
        return registry

    return make


@pytest.fixture(scope="session")
def session_registry_factory(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPKI
) -> Iterator[RegistryFactory]:
    started: list[UpstreamRegistry] = []
    try:
        yield _registry_factory(tmp_path_factory.mktemp("registries"), pki, started)
    finally:
        for registry in started:
            registry.stop()


@pytest.fixture
def registry_factory(tmp_path: Path, pki: TestPKI) -> Iterator[RegistryFactory]:
    """Own registries for one test (free to stop/start them); all stopped afterwards."""
    started: list[UpstreamRegistry] = []
    try:
        yield _registry_factory(tmp_path, pki, started)
    finally:
        for registry in started:
            registry.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(session_registry_factory: RegistryFactory) -> UpstreamRegistry:
    """TLS + htpasswd (alice, bob); pushes use alice."""
    return session_registry_factory(auth=RegistryAuth.HTPASSWD, users=dict([ALICE, BOB]), creds=ALICE)


@pytest.fixture(scope="session")
def open_registry(session_registry_factory: RegistryFactory) -> UpstreamRegistry:
    """TLS, no auth."""
    return session_registry_factory()


@pytest.fixture(scope="session")
def plain_registry(session_registry_factory: RegistryFactory) -> UpstreamRegistry:
    """Plain HTTP, no auth: a "lab registry"."""
    return session_registry_factory(tls=False)


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[TokenServer]:
    """alice may pull and push everywhere, bob may pull everywhere, anyone may pull ``public/*``."""
    server = TokenServer(
        tmp_path_factory.mktemp("token"),
        pki,
        users=dict([ALICE, BOB]),
        grants=[
            Grant(ALICE[0], "*", frozenset({"pull", "push"})),
            Grant(BOB[0], "*", frozenset({"pull"})),
        ],
        public_repositories=[f"{PUBLIC_PREFIX}*"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(session_registry_factory: RegistryFactory, token_server: TokenServer) -> UpstreamRegistry:
    """TLS + token auth through ``token_server`` (realm on 127.0.0.1); pushes use alice."""
    return session_registry_factory(auth=RegistryAuth.TOKEN, token=token_server.settings(), creds=ALICE)


@pytest.fixture
def push_test_image(request: pytest.FixtureRequest, tmp_path: Path) -> ImagePusher:
    """Push a small synthetic image, in a repository named after the test unless one is given.

    The seed defaults to one derived from the repository name: distinct repositories get distinct
    layers, and a test gets the same digests on every run.
    """
    test_name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    calls = itertools.count()

    def push(registry: UpstreamRegistry, repository: str | None = None, **kwargs: Any) -> ImageInfo:
        number = next(calls)
        repo = repository or f"test/{test_name}-{number}"
        kwargs.setdefault("seed", zlib.crc32(repo.encode()))
        kwargs.setdefault("creds", registry.creds)
        return push_image(registry, repo, tmp_path / f"image-{number}", **kwargs)

    return push


@pytest.fixture
def private_containerd(tmp_path: Path) -> Iterator[PrivateContainerd]:
    """A containerd on a temp socket (skips when containerd cannot run here)."""
    ctd = PrivateContainerd(tmp_path / "containerd")
    try:
        ctd.start()
        yield ctd
    finally:
        ctd.stop()
