"""Credential secrets from the TOML, the OS keyring, a file or an env var, never leaking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import pytest

from appliance.config.credentials import (
    KEYRING_SERVICE,
    credential_from_table,
    keyring_available,
    keyring_user,
    store_secret,
)
from appliance.config.model import Secret, SecretStore
from appliance.errors import ConfigError, SecretUnavailable


class FileKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend (keyring's plugin API) that keeps items in a JSON file."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _items(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._items().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        items = self._items()
        items[f"{service}\0{username}"] = password
        self.path.write_text(json.dumps(items))

    def delete_password(self, service: str, username: str) -> None:
        items = self._items()
        items.pop(f"{service}\0{username}")
        self.path.write_text(json.dumps(items))


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[FileKeyring]:
    previous = keyring.get_keyring()
    backend = FileKeyring(tmp_path / "keyring.json")
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_inline_password(tmp_path: Path) -> None:
    credential = credential_from_table({"scope": "quay.io", "username": "u", "password": "s3cret"}, "c", {})
    assert credential.password.reveal() == "s3cret"
    assert credential.store is SecretStore.TOML
    assert "s3cret" not in repr(credential)


def test_password_file_drops_one_final_newline_and_resolves_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "hub.secret").write_text("tok en\n\n")
    table = {"scope": "docker.io/orgA/*", "username": "alice", "password_file": "hub.secret"}
    credential = credential_from_table(table, "c", {}, base_dir=tmp_path)
    assert credential.scope == "docker.io/orga"
    assert credential.password.reveal() == "tok en\n"
    assert credential.store is SecretStore.FILE and credential.reference == str(tmp_path / "hub.secret")


def test_unreadable_password_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailable, match=r"credential quay.io: cannot read password_file '.*missing'"):
        credential_from_table(
            {"scope": "quay.io", "username": "u", "password_file": str(tmp_path / "missing")}, "c", {}
        )


def test_password_env_reads_the_named_variable() -> None:
    table = {"scope": "ghcr.io", "username": "u", "password_env": "GHCR_TOKEN"}
    credential = credential_from_table(table, "c", {"GHCR_TOKEN": "ghp_x"})
    assert credential.password == Secret("ghp_x") and credential.reference == "GHCR_TOKEN"
    with pytest.raises(SecretUnavailable, match=r"GHCR_TOKEN.*not set"):
        credential_from_table(table, "c", {})


def test_keyring_without_a_backend_names_the_other_options(no_keyring: None) -> None:
    assert not keyring_available()
    with pytest.raises(SecretUnavailable) as caught:
        credential_from_table({"scope": "quay.io", "username": "u", "keyring": True}, "c", {})
    message = str(caught.value)
    assert "no OS keyring" in message
    assert "password_file" in message and "password_env" in message and "password =" in message
    with pytest.raises(SecretUnavailable, match="no OS keyring"):
        store_secret("quay.io", "u", Secret("x"))


def test_keyring_store_and_read_back(file_keyring: FileKeyring) -> None:
    user = store_secret("docker.io/orgb", "bob", Secret("hub-pat"))
    assert user == keyring_user("docker.io/orgb", "bob") == "bob@docker.io/orgb"
    assert file_keyring.get_password(KEYRING_SERVICE, user) == "hub-pat"
    credential = credential_from_table(
        {"scope": "docker.io/orgB/*", "username": "bob", "keyring": True}, "c", {}
    )
    assert credential.password.reveal() == "hub-pat"
    assert credential.store is SecretStore.KEYRING


def test_missing_keyring_item_says_how_to_add_it(file_keyring: FileKeyring) -> None:
    with pytest.raises(SecretUnavailable, match=r"keyring set registry-appliance 'u@quay.io'"):
        credential_from_table({"scope": "quay.io", "username": "u", "keyring": True}, "c", {})


@pytest.mark.parametrize(
    "table",
    [
        {"scope": "quay.io", "username": "u"},
        {"scope": "quay.io", "username": "u", "password": "a", "password_env": "B"},
        {"scope": "quay.io", "username": "u", "password": "a", "keyring": True},
    ],
)
def test_exactly_one_secret_source_is_required(table: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match="exactly one of password, keyring = true, password_file, password_env"
    ):
        credential_from_table(table, "credentials[0]", {})


def test_keyring_false_does_not_count_as_a_source() -> None:
    table = {"scope": "quay.io", "username": "u", "password": "a", "keyring": False}
    assert credential_from_table(table, "c", {}).password.reveal() == "a"


@pytest.mark.parametrize(
    ("scope", "why"), [("", "empty host"), ("https://quay.io", "scheme"), ("quay.io//x", "invalid scope")]
)
def test_bad_scope_is_named(scope: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        credential_from_table({"scope": scope, "username": "u", "password": "p"}, "credentials[0]", {})
