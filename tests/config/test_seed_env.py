"""The seed's environment variables, with rpardini 0.7.0 semantics and its known bugs fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config.model import (
    DEFAULT_EXTRA_REGISTRIES,
    DOCKER_HUB_HOST,
    Config,
    Credential,
    LogFormat,
    RegistryConfig,
    Secret,
    SecretStore,
    TunnelMode,
)
from appliance.config.seed_env import apply_env
from appliance.config.seed_env_auth import SEED_DUMMY_AUTH, encode_auth_registries, parse_auth_registries
from appliance.config.seed_env_export import export_env
from appliance.config.values import default_config
from appliance.errors import ConfigError

HOME = {"HOME": "/nonexistent-home"}


def load(**env: str) -> tuple[Config, tuple[str, ...]]:
    result = apply_env(default_config(HOME), env)
    return result.config, result.warnings


def creds(config: Config) -> list[tuple[str, str, str]]:
    return [(c.scope, c.username, c.password.reveal()) for c in config.credentials]


def hosts(config: Config) -> list[str]:
    return [r.host for r in config.registries]


def test_no_env_gives_docker_hub_and_the_seed_default_registries() -> None:
    config, warnings = load()
    assert hosts(config) == [DOCKER_HUB_HOST, *DEFAULT_EXTRA_REGISTRIES]
    assert config.registry_for("docker.io") is config.registries[0]
    assert config.credentials == ()
    assert warnings == ()


def test_registries_split_on_any_whitespace_and_keep_host_port() -> None:
    config, _ = load(REGISTRIES="  quay.io\tmyreg.example:5000\n\nGHCR.IO ")
    assert hosts(config) == [DOCKER_HUB_HOST, "quay.io", "myreg.example:5000", "ghcr.io"]


def test_empty_registries_means_docker_hub_only() -> None:
    config, _ = load(REGISTRIES="")
    assert hosts(config) == [DOCKER_HUB_HOST]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("https://quay.io", "scheme"),
        ("quay.io/path", "path"),
        ("bad_host!", "invalid host"),
        ("host:99999", "port"),
    ],
)
def test_registry_with_scheme_or_path_is_an_error_naming_the_entry(entry: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(REGISTRIES=f"gcr.io {entry}")
    message = str(caught.value)
    assert message.startswith("REGISTRIES: ")
    assert repr(entry) in message and why in message


def test_duplicate_registries_are_merged_with_a_warning() -> None:
    config, warnings = load(REGISTRIES="quay.io QUAY.IO quay.io:443 docker.io")
    assert hosts(config) == [DOCKER_HUB_HOST, "quay.io"]
    assert sum("duplicate" in w for w in warnings) == 3


def test_auth_docker_io_in_registries_merges_into_docker_hub_with_a_warning() -> None:
    config, warnings = load(REGISTRIES="auth.docker.io quay.io")
    assert hosts(config) == [DOCKER_HUB_HOST, "quay.io"]
    assert any("auth.docker.io" in w and "Docker Hub" in w for w in warnings)


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "on"])
def test_true_spellings_turn_a_switch_on(value: str) -> None:
    config, _ = load(ALLOW_PUSH=value, DEBUG=value, DISABLE_IPV6=value, ENABLE_MANIFEST_CACHE=value)
    assert config.allow_push and config.debug and config.disable_ipv6 and config.manifest_cache.enabled


@pytest.mark.parametrize("value", ["false", "0", "no", "off", "FALSE"])
def test_false_spellings_turn_a_switch_off(value: str) -> None:
    config, _ = load(VERIFY_SSL=value)
    assert config.verify_ssl is False


def test_empty_boolean_means_default() -> None:
    config, _ = load(VERIFY_SSL="", ALLOW_PUSH="")
    assert config.verify_ssl is True and config.allow_push is False


def test_garbage_boolean_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^VERIFY_SSL: invalid boolean 'ture'"):
        load(VERIFY_SSL="ture")


def test_proxy_request_buffering_is_accepted_and_validated() -> None:
    config, _ = load(PROXY_REQUEST_BUFFERING="false")
    assert config == load()[0]
    with pytest.raises(ConfigError, match="PROXY_REQUEST_BUFFERING"):
        load(PROXY_REQUEST_BUFFERING="maybe")


def test_password_containing_the_entry_delimiter_is_kept_whole() -> None:
    config, _ = load(AUTH_REGISTRIES="quay.io:robot+x:pa:ss:word auth.docker.io:me:tok")
    assert creds(config) == [("quay.io", "robot+x", "pa:ss:word"), ("auth.docker.io", "me", "tok")]
    assert all(c.store is SecretStore.SEED_ENV for c in config.credentials)


def test_seed_dummy_auth_value_means_no_credentials() -> None:
    config, _ = load(AUTH_REGISTRIES=SEED_DUMMY_AUTH)
    assert config.credentials == ()


def test_whitespace_inside_a_password_is_preserved_with_a_custom_separator() -> None:
    config, _ = load(
        AUTH_REGISTRIES="a.io:::u:::pa  ss\tword ;;;\n  b.io:::v:::x y\n",
        AUTH_REGISTRIES_DELIMITER=";;;",
        AUTH_REGISTRY_DELIMITER=":::",
    )
    assert creds(config) == [("a.io", "u", "pa  ss\tword "), ("b.io", "v", "x y")]


def test_gcr_json_key_with_the_seed_readme_delimiters() -> None:
    key = '{\n  "type": "service_account",\n  "private_key": "-----BEGIN-----\\nAB:CD\\n"\n}'
    config, _ = load(
        AUTH_REGISTRIES=f"gcr.io:::_json_key:::{key};;;auth.docker.io:::user:::pa:ss word",
        AUTH_REGISTRIES_DELIMITER=";;;",
        AUTH_REGISTRY_DELIMITER=":::",
    )
    assert creds(config) == [("gcr.io", "_json_key", key), ("auth.docker.io", "user", "pa:ss word")]


def test_host_port_registry_in_auth_registries_with_default_delimiter() -> None:
    config, _ = load(REGISTRIES="myreg:5000", AUTH_REGISTRIES="myreg:5000:user:pass")
    assert creds(config) == [("myreg:5000", "user", "pass")]


def test_numeric_second_field_is_a_user_when_only_the_bare_host_is_a_registry() -> None:
    config, _ = load(REGISTRIES="myreg", AUTH_REGISTRIES="myreg:5000:pa:ss")
    assert creds(config) == [("myreg", "5000", "pa:ss")]


def test_three_fields_with_numeric_user_are_host_user_password() -> None:
    config, _ = load(AUTH_REGISTRIES="myreg:5000:secret")
    assert creds(config) == [("myreg", "5000", "secret")]


def test_repository_prefix_scopes_in_auth_registries() -> None:
    config, _ = load(AUTH_REGISTRIES="docker.io/orga/*:alice:a1 docker.io/orgb:bob:b2")
    assert creds(config) == [("docker.io/orga", "alice", "a1"), ("docker.io/orgb", "bob", "b2")]
    assert config.credentials[0].repository_prefix == "orga"


@pytest.mark.parametrize("value", ["quay.io:useronly", "quay.io:user:", ":user:pass", "quay.io::pass"])
def test_incomplete_auth_entry_is_an_error_without_the_secret(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(AUTH_REGISTRIES=value)
    message = str(caught.value)
    assert message.startswith("AUTH_REGISTRIES entry 1")
    assert "pass" not in message.replace("password", "")


def test_wrong_delimiters_do_not_echo_the_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        load(AUTH_REGISTRIES='gcr.io;_json_key;{"private": "SECRETKEY"}', AUTH_REGISTRY_DELIMITER=":::")
    assert "SECRETKEY" not in str(caught.value)


def test_duplicate_credential_scopes_warn_and_the_later_wins() -> None:
    config, warnings = load(AUTH_REGISTRIES="quay.io:a:1 quay.io:b:2")
    assert creds(config) == [("quay.io", "b", "2")]
    assert any("duplicate credential" in w for w in warnings)


def test_manifest_cache_tiers_from_env() -> None:
    config, _ = load(
        ENABLE_MANIFEST_CACHE="true",
        MANIFEST_CACHE_PRIMARY_REGEX="(main|dev)",
        MANIFEST_CACHE_PRIMARY_TIME="5m",
        MANIFEST_CACHE_SECONDARY_REGEX="",
        MANIFEST_CACHE_DEFAULT_TIME="2h",
    )
    policy = config.manifest_cache
    assert [(t.name, t.regex, t.ttl) for t in policy.tiers] == [("primary", "(main|dev)", 300.0)]
    assert policy.default_ttl == 7200.0
    assert policy.ttl_for("dev-x") == 300.0 and policy.ttl_for("1.2.3") == 7200.0


def test_default_manifest_tiers_are_the_seeds() -> None:
    config, _ = load(ENABLE_MANIFEST_CACHE="true")
    policy = config.manifest_cache
    assert policy.ttl_for("stable") == 600.0
    assert policy.ttl_for("v1.2.3") == 60 * 86400.0
    assert policy.ttl_for("latest") == 3600.0


def test_invalid_manifest_regex_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"^MANIFEST_CACHE_SECONDARY_REGEX: invalid regular expression '\(oops'"
    ):
        load(MANIFEST_CACHE_SECONDARY_REGEX="(oops")


def test_cache_size_and_timeouts() -> None:
    config, _ = load(
        CACHE_MAX_SIZE="500m",
        CACHE_INACTIVE="7d",
        SEND_TIMEOUT="90s",
        PROXY_CONNECT_SEND_TIMEOUT="2m",
        KEEPALIVE_TIMEOUT="1h30m",
    )
    assert config.cache.max_size == 500 * 1024**2
    assert config.cache.inactive == 7 * 86400.0
    assert config.timeouts.send == 90.0
    assert config.timeouts.proxy_connect_send == 120.0
    assert config.timeouts.keepalive == 5400.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CACHE_MAX_SIZE", "12q"),
        ("APPLIANCE_PULL_AHEAD", "four"),
        ("APPLIANCE_PULL_AHEAD", "-1"),
        ("CACHE_INACTIVE", "-1d"),
        ("PROXY_READ_TIMEOUT", "-30s"),
        ("MANIFEST_CACHE_PRIMARY_TIME", "soon"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**{name: value})
    assert str(caught.value).startswith(f"{name}: ")
    assert repr(value) in str(caught.value)


def test_pull_ahead_from_env_and_back() -> None:
    assert load()[0].cache.pull_ahead == 4
    config, _ = load(APPLIANCE_PULL_AHEAD="0")
    assert config.cache.pull_ahead == 0
    assert ("APPLIANCE_PULL_AHEAD", "0") in export_env(config)[0]
    assert "APPLIANCE_PULL_AHEAD" not in dict(export_env(load()[0])[0])


def test_ca_files_debug_listen_log_format_tunnel() -> None:
    config, _ = load(
        CA_KEY_FILE="/ca/k.pem",
        CA_CRT_FILE="/ca/c.pem",
        LISTEN="127.0.0.1:8080",
        LOG_FORMAT="json",
        TUNNEL="example.com, *.corp.example:8443",
    )
    assert config.ca_key_path == Path("/ca/k.pem") and config.ca_cert_path == Path("/ca/c.pem")
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    assert config.log_format is LogFormat.JSON
    assert config.tunnel.mode is TunnelMode.LIST
    assert config.tunnel.hosts == ("example.com", "*.corp.example:8443")
    assert load(TUNNEL="none")[0].tunnel.mode is TunnelMode.NONE


def test_upstream_proxy_prefers_the_appliance_variable_and_ignores_https_proxy() -> None:
    assert load(HTTPS_PROXY="http://p:1")[0].upstream_proxy is None
    assert load(UPSTREAM_PROXY="http://a:1")[0].upstream_proxy == "http://a:1"
    both = load(UPSTREAM_PROXY="http://a:1", APPLIANCE_UPSTREAM_PROXY="http://b:2")[0]
    assert both.upstream_proxy == "http://b:2"


def test_bad_upstream_proxy_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load(UPSTREAM_PROXY="ftp://u:hunter2@p:1")
    assert "UPSTREAM_PROXY" in str(caught.value) and "hunter2" not in str(caught.value)


def test_export_uses_seed_default_delimiters_when_nothing_collides() -> None:
    credentials = [
        Credential("quay.io", "robot", Secret("tok")),
        Credential("auth.docker.io", "me", Secret("pw")),
    ]
    assert encode_auth_registries(credentials) == ("quay.io:robot:tok auth.docker.io:me:pw", " ", ":")


def test_export_switches_to_triple_delimiters_for_spaces() -> None:
    credentials = [Credential("auth.docker.io", "user", Secret("pa:ss word"))]
    assert encode_auth_registries(credentials) == ("auth.docker.io:::user:::pa:ss word", ";;;", ":::")


def test_export_warns_about_settings_env_vars_cannot_hold() -> None:
    config = default_config(HOME)
    config = Config(
        **{
            **{f: getattr(config, f) for f in config.__slots__},  # type: ignore[arg-type]
            "registries": (*config.registries, RegistryConfig(host="my.reg", insecure=True)),
        }
    )
    pairs, warnings = export_env(config)
    assert dict(pairs)["REGISTRIES"].endswith("my.reg")
    assert any("my.reg" in w for w in warnings)


# --- round trips ---------------------------------------------------------------------------------

_hosts = st.from_regex(
    r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,5}){1,2}(:[1-9][0-9]{0,3})?", fullmatch=True
)
_scopes = st.one_of(
    _hosts,
    st.builds(lambda h, p: f"{h}/{p}", _hosts, st.from_regex(r"[a-z0-9]+(/[a-z0-9]+)?", fullmatch=True)),
)
# Secrets built from arbitrary unicode plus the pieces that break naive parsers.
_text = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=4),
        st.sampled_from([" ", ":", ";;;", ":::", '"', "'", "\n", "\t", "é", "鍵"]),
    ),
    min_size=1,
    max_size=8,
).map("".join)
_users = _text.filter(lambda u: u == u.strip() and u.strip())
_credential_lists = st.lists(
    st.builds(lambda s, u, p: Credential(s, u, Secret(p), SecretStore.SEED_ENV), _scopes, _users, _text),
    max_size=4,
    unique_by=lambda c: c.scope,
)


@settings(max_examples=300, deadline=None)
@given(_credential_lists)
def test_auth_registries_encoding_parses_back_byte_for_byte(credentials: list[Credential]) -> None:
    value, entries_delimiter, entry_delimiter = encode_auth_registries(credentials)
    parsed, warnings = parse_auth_registries(value, entries_delimiter, entry_delimiter)
    assert [(c.scope, c.username, c.password.reveal()) for c in parsed] == [
        (c.scope, c.username, c.password.reveal()) for c in credentials
    ]
    assert warnings == []


@settings(max_examples=100, deadline=None)
@given(_credential_lists, st.lists(_hosts, max_size=4))
def test_env_export_env_reproduces_the_configuration(
    credentials: list[Credential], registries: list[str]
) -> None:
    value, d1, d2 = encode_auth_registries(credentials)
    env = {
        "REGISTRIES": " ".join(registries),
        "AUTH_REGISTRIES": value,
        "AUTH_REGISTRIES_DELIMITER": d1,
        "AUTH_REGISTRY_DELIMITER": d2,
        "CACHE_MAX_SIZE": "3g",
        "ENABLE_MANIFEST_CACHE": "true",
    }
    first, _ = load(**env)
    pairs, _ = export_env(first)
    second, _ = load(**dict(pairs))
    assert second == first


def test_the_tls_listener_is_configured_from_the_environment_and_exported_back() -> None:
    env = {
        "TLS_LISTEN": "0.0.0.0:3129",
        "TLS_CERT_FILE": "/etc/ra/tls.crt",
        "TLS_KEY_FILE": "/etc/ra/tls.key",
    }
    config = apply_env(default_config({}), env).config
    assert config.tls_listen == ("0.0.0.0", 3129)
    assert (config.tls_cert_file, config.tls_key_file) == (Path("/etc/ra/tls.crt"), Path("/etc/ra/tls.key"))
    exported = dict(export_env(config)[0])
    assert {key: exported[key] for key in env} == env


def test_a_tls_certificate_without_its_key_names_both_variables() -> None:
    with pytest.raises(ConfigError, match="TLS_CERT_FILE and TLS_KEY_FILE go together"):
        apply_env(default_config({}), {"TLS_CERT_FILE": "/etc/ra/tls.crt"})
