"""The TOML file: validation with useful messages, faithful edits, atomic 0600 writes."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
import tomlkit

from appliance.config.model import DOCKER_HUB_HOST, Config, Scheme, Secret, SecretStore
from appliance.config.seed_env import apply_env
from appliance.config.toml_edit import (
    add_registry,
    remove_credential,
    remove_registry,
    set_credential,
    update_registry,
    write_document,
)
from appliance.config.toml_read import config_from_document, load_file, read_document
from appliance.config.toml_render import render_config
from appliance.config.values import default_config
from appliance.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ENV = {"HOME": "/nonexistent-home"}


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_file(path, default_config(ENV), environ or ENV).config


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    return str(caught.value)


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'listen = "0.0.0.0:3128"\ndebug = = true\n')
    assert message.startswith(f"{tmp_path / 'config.toml'}:2:")
    assert "TOML syntax error" in message and "\n" not in message


def test_unknown_top_level_key_suggests_the_nearest(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'cahce_dir = "/x"\n')
    assert "unknown key 'cahce_dir'" in message and "did you mean 'cache_dir'?" in message


def test_unknown_nested_keys_are_named_with_their_path(tmp_path: Path) -> None:
    assert "registries[1].isecure" in error_of(
        tmp_path, '[[registries]]\nhost="a.io"\n[[registries]]\nhost="b.io"\nisecure=true\n'
    )
    message = error_of(tmp_path, '[cache]\nmax_szie = "1g"\n')
    assert "cache.max_szie" in message and "did you mean 'max_size'?" in message


@pytest.mark.parametrize(
    ("text", "where", "value"),
    [
        ('[cache]\nmax_size = "12q"\n', "cache.max_size", "'12q'"),
        ("[cache]\npull_ahead = -1\n", "cache.pull_ahead", "-1"),
        ("[cache]\npull_ahead = true\n", "cache.pull_ahead", "True"),
        ("[cache]\npull_ahead = 65\n", "cache.pull_ahead", "65"),
        ('[timeouts]\nsend = "-5s"\n', "timeouts.send", "'-5s'"),
        ("[timeouts]\nsend = -5\n", "timeouts.send", "-5"),
        ('[[registries]]\nhost = ""\n', "registries[0].host", "''"),
        ('[[registries]]\nhost = "https://x.io"\n', "registries[0].host", "'https://x.io'"),
        ('listen = "nowhere"\n', "listen", "'nowhere'"),
        (
            '[manifest_cache]\n[[manifest_cache.tiers]]\nname="a"\nregex="(x"\nttl="1m"\n',
            "tiers[0].regex",
            "'(x'",
        ),
    ],
)
def test_bad_values_name_the_key_and_the_value(tmp_path: Path, text: str, where: str, value: str) -> None:
    message = error_of(tmp_path, text)
    assert where in message and value in message


def test_wrong_types_are_named(tmp_path: Path) -> None:
    assert "allow_push: expected true or false, got 'yes'" in error_of(tmp_path, 'allow_push = "yes"\n')


def test_the_example_file_is_valid_and_matches_the_defaults_it_documents(tmp_path: Path) -> None:
    (tmp_path / "gcr.json").write_text('{"k": "v"}\n')
    text = (ROOT / "config.example.toml").read_text().replace("/run/secrets/gcr-key.json", "gcr.json")
    config = load_text(tmp_path, text, {**ENV, "ORGA_HUB_TOKEN": "t"})
    defaults = default_config(ENV)
    assert config.cache == defaults.cache and config.timeouts == defaults.timeouts
    assert config.limits == defaults.limits
    assert config.manifest_cache == defaults.manifest_cache
    internal = config.registry_for("registry.internal:5000")
    assert internal is not None and internal.allow_push is True and internal.scheme is Scheme.HTTPS
    assert [c.scope for c in config.credentials] == ["docker.io/orga", "gcr.io"]
    assert config.credentials[1].password.reveal() == '{"k": "v"}'


def test_example_file_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    from appliance.config.toml_keys import REGISTRY_KEYS, VALID_KEYS

    tables = [(table, key) for table, keys in VALID_KEYS.items() for key in keys]
    for table, key in (
        *tables,
        *(("", key) for key in (*REGISTRY_KEYS, "password_file", "keyring", "password_env")),
    ):
        dotted = f"{table}.{key}" if table else key
        assert f"{key} =" in text or f"[[{dotted}]]" in text or f"[{dotted}]" in text, dotted


def test_docker_hub_table_customises_docker_hub(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[[registries]]\nhost = "docker.io"\nmanifest_cache = false\n')
    assert config.registries[0].host == DOCKER_HUB_HOST
    assert config.registries[0].manifest_cache is False
    assert [r.host for r in config.registries] == [DOCKER_HUB_HOST]


def test_empty_registries_array_means_docker_hub_only(tmp_path: Path) -> None:
    assert [r.host for r in load_text(tmp_path, "registries = []\n").registries] == [DOCKER_HUB_HOST]


COMMENTED = """# my appliance
listen = "127.0.0.1:3128"  # loopback only

# internal registry
[[registries]]
host = "registry.internal"  # keep this
"""


def test_add_registry_keeps_comments_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(COMMENTED)
    config = add_registry(path, {"host": "quay.io", "insecure": True}, ENV)
    text = path.read_text()
    assert "# my appliance" in text and "# keep this" in text and "# loopback only" in text
    assert [r.host for r in config.registries] == [DOCKER_HUB_HOST, "registry.internal", "quay.io"]
    assert load_file(path, default_config(ENV), ENV).config.registry_for("quay.io").insecure  # type: ignore[union-attr]


def test_first_added_registry_keeps_the_default_registries(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("# empty\n")
    config = add_registry(path, {"host": "my.reg"}, ENV)
    assert [r.host for r in config.registries][-1] == "my.reg"
    assert config.registry_for("ghcr.io") is not None


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: add_registry(p, {"host": "https://bad"}, ENV),
        lambda p: add_registry(p, {"host": "registry.internal"}, ENV),
        lambda p: add_registry(p, {"host": "ok.io", "insecurre": True}, ENV),
        lambda p: update_registry(p, "registry.internal", {"tag_ttl": "-1m"}, ENV),
        lambda p: update_registry(p, "nope.io", {"insecure": True}, ENV),
        lambda p: remove_registry(p, "docker.io", ENV),
        lambda p: remove_registry(p, "nope.io", ENV),
        lambda p: set_credential(
            p, "quay.io", "u", store=SecretStore.ENV, reference="UNSET_VAR", environ=ENV
        ),
        lambda p: set_credential(p, "https://quay.io", "u", password=Secret("x"), environ=ENV),
        lambda p: remove_credential(p, "quay.io", ENV),
    ],
)
def test_failed_edit_leaves_the_file_byte_identical(tmp_path: Path, edit: object) -> None:
    path = tmp_path / "c.toml"
    path.write_text(COMMENTED)
    path.chmod(0o640)
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        edit(path)  # type: ignore[operator]
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_update_and_remove_registry(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(COMMENTED)
    config = update_registry(path, "REGISTRY.internal", {"scheme": "http", "tag_ttl": "5m"}, ENV)
    registry = config.registry_for("registry.internal")
    assert registry is not None and registry.scheme is Scheme.HTTP and registry.tag_ttl == 300
    config = update_registry(path, "registry.internal", {"tag_ttl": None}, ENV)
    assert config.registry_for("registry.internal").tag_ttl is None  # type: ignore[union-attr]
    config = remove_registry(path, "registry.internal", ENV)
    assert [r.host for r in config.registries] == [DOCKER_HUB_HOST]
    assert "# my appliance" in path.read_text()


def test_inline_credential_makes_the_file_0600_and_removing_it_keeps_0600(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(COMMENTED)
    path.chmod(0o644)
    config = set_credential(path, "docker.io/orgA/*", "alice", password=Secret("pa:ss word"), environ=ENV)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.credentials[0].scope == "docker.io/orga"
    assert config.credentials[0].password.reveal() == "pa:ss word"
    config = set_credential(
        path, "docker.io/orga", "alice2", store=SecretStore.ENV, reference="TOK", environ={**ENV, "TOK": "t"}
    )
    assert [(c.username, c.store) for c in config.credentials] == [("alice2", SecretStore.ENV)]
    config = remove_credential(path, "docker.io/orga/*", {**ENV, "TOK": "t"})
    assert config.credentials == ()
    assert "# keep this" in path.read_text()


def test_write_document_is_atomic_and_keeps_a_non_secret_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("debug = false\n")
    path.chmod(0o640)
    document = read_document(path)
    document["debug"] = True
    write_document(path, document)
    assert path.read_text() == "debug = true\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    document["upstream_proxy"] = "http://u:pw@proxy:3128"
    write_document(path, document)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rendered_config_loads_back_to_the_same_config(tmp_path: Path) -> None:
    defaults = default_config(ENV)
    env = {
        "REGISTRIES": "quay.io myreg:5000",
        "AUTH_REGISTRIES": "myreg:5000:u:p:w",
        "CACHE_MAX_SIZE": "500m",
        "ENABLE_MANIFEST_CACHE": "true",
        "MANIFEST_CACHE_PRIMARY_REGEX": "",
        "SEND_TIMEOUT": "90s",
        "TUNNEL": "a.io b.io:8443",
        "LISTEN": "[::1]:3129",
        "UPSTREAM_PROXY": "http://p:1",
        "DEBUG": "1",
        "CA_KEY_FILE": "/ca/k",
        "APPLIANCE_PULL_AHEAD": "0",
    }
    config = apply_env(defaults, env).config
    document = render_config(config, defaults)
    reloaded = config_from_document(tomlkit.parse(tomlkit.dumps(document)), defaults, ENV).config
    # Only where the secret came from differs: AUTH_REGISTRIES before, the file after.
    assert [c.store for c in reloaded.credentials] == [SecretStore.TOML]
    assert reloaded == replace(
        config, credentials=tuple(replace(c, store=SecretStore.TOML) for c in config.credentials)
    )
