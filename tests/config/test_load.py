"""Precedence: built-in defaults < TOML file < seed env vars < command-line flags."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config.load import Overrides, load_config
from appliance.config.model import Config, Credential, Secret, SecretStore
from appliance.config.seed_env_auth import encode_auth_registries
from appliance.config.seed_env_export import export_env
from appliance.config.toml_render import render_config
from appliance.config.values import default_config
from appliance.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_live_under_the_users_data_directory(tmp_path: Path) -> None:
    config = load_config(None, {"HOME": str(tmp_path)}).config
    assert config.cache_dir == tmp_path / ".local/share/registry-appliance/cache"
    assert config.ca_dir == tmp_path / ".local/share/registry-appliance/ca"
    assert config.control_socket == tmp_path / ".local/share/registry-appliance/control.sock"
    xdg = load_config(None, {"HOME": str(tmp_path), "XDG_DATA_HOME": "/data"}).config
    assert xdg.cache_dir == Path("/data/registry-appliance/cache")
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 3128)


def test_each_source_overrides_the_one_below(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "127.0.0.1:1000"\ndebug = true\n[cache]\nmax_size = "1g"\n')
    env = {"HOME": str(tmp_path)}
    from_file = load_config(None, env, path).config
    assert (from_file.listen_port, from_file.debug, from_file.cache.max_size) == (1000, True, 1024**3)
    from_env = load_config(None, {**env, "LISTEN": "127.0.0.1:2000", "CACHE_MAX_SIZE": "2g"}, path).config
    assert (from_env.listen_port, from_env.debug, from_env.cache.max_size) == (2000, True, 2 * 1024**3)
    from_flag = load_config(
        Overrides(listen="127.0.0.1:3000"), {**env, "LISTEN": "127.0.0.1:2000"}, path
    ).config
    assert from_flag.listen_port == 3000
    assert from_flag.config_path == path


def test_flags_cover_paths_resolve_upstream_ca_tunnel_and_log_format(tmp_path: Path) -> None:
    overrides = Overrides(
        cache_dir="/c",
        ca_dir="/a",
        control_socket="/s.sock",
        upstream_ca="/ca.pem",
        resolve=("reg.test=127.0.0.1:5000", "other.test:8443=[::1]:9"),
        tunnel="none",
        log_format="json",
    )
    config = load_config(overrides, {"HOME": str(tmp_path)}).config
    assert (config.cache_dir, config.ca_dir, config.control_socket) == (
        Path("/c"),
        Path("/a"),
        Path("/s.sock"),
    )
    assert config.upstream_ca == Path("/ca.pem")
    assert [(r.host, r.port, r.address, r.address_port) for r in config.resolve] == [
        ("reg.test", None, "127.0.0.1", 5000),
        ("other.test", 8443, "::1", 9),
    ]
    with pytest.raises(ConfigError, match=r"^--resolve: .*'reg.test'"):
        load_config(Overrides(resolve=("reg.test",)), {"HOME": str(tmp_path)})


def test_registries_env_replaces_the_files_list_but_keeps_details(tmp_path: Path) -> None:
    path = write(tmp_path, '[[registries]]\nhost = "a.io"\ninsecure = true\n[[registries]]\nhost = "b.io"\n')
    result = load_config(None, {"HOME": str(tmp_path), "REGISTRIES": "a.io c.io"}, path)
    assert [r.host for r in result.config.registries][1:] == ["a.io", "c.io"]
    assert result.config.registry_for("a.io").insecure  # type: ignore[union-attr]
    assert any("b.io" in w for w in result.warnings)


def test_auth_registries_replaces_file_credentials_unless_it_is_the_seed_dummy(tmp_path: Path) -> None:
    path = write(tmp_path, '[[credentials]]\nscope = "quay.io"\nusername = "u"\npassword = "p"\n')
    env = {"HOME": str(tmp_path)}
    dummy = "some.authenticated.registry:oneuser:onepassword another.registry:user:password"
    kept = load_config(None, {**env, "AUTH_REGISTRIES": dummy}, path).config
    assert [c.scope for c in kept.credentials] == ["quay.io"]
    replaced = load_config(None, {**env, "AUTH_REGISTRIES": "ghcr.io:me:tok"}, path)
    assert [c.scope for c in replaced.config.credentials] == ["ghcr.io"]
    assert replaced.warnings


def test_env_tier_variables_edit_the_files_tier_of_the_same_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[manifest_cache]\nenabled = true\n[[manifest_cache.tiers]]\nname = "primary"\n'
        'regex = "main"\nttl = "1m"\n[[manifest_cache.tiers]]\nname = "nightly"\nregex = "n"\n'
        'ttl = "2m"\n',
    )
    config = load_config(None, {"HOME": str(tmp_path), "MANIFEST_CACHE_PRIMARY_TIME": "5m"}, path).config
    assert [(t.name, t.regex, t.ttl) for t in config.manifest_cache.tiers] == [
        ("primary", "main", 300.0),
        ("nightly", "n", 120.0),
    ]


def test_config_file_found_through_app_env_or_xdg_config_home(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    implicit = tmp_path / "cfg/registry-appliance/config.toml"
    implicit.parent.mkdir(parents=True)
    implicit.write_text("debug = true\n")
    assert load_config(None, home).config.config_path == implicit
    other = write(tmp_path, "allow_push = true\n")
    assert load_config(None, {**home, "APPLIANCE_CONFIG": str(other)}).config.allow_push


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(None, {"HOME": str(tmp_path)}, tmp_path / "nope.toml")


# --- env -> TOML -> env ----------------------------------------------------------------------------

_hosts = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?\.[a-z]{2,4}(:[1-9][0-9]{0,3})?", fullmatch=True)
_secret = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=4),
        st.sampled_from([" ", ":", ";;;", ":::", '"', "'", "\\", "ü", "🔑"]),
    ),
    min_size=1,
    max_size=6,
).map("".join)
_user = _secret.filter(lambda u: u.strip() == u)


def plain(config: Config) -> Config:
    return replace(
        config,
        config_path=None,
        credentials=tuple(
            Credential(c.scope, c.username, Secret(c.password.reveal())) for c in config.credentials
        ),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    registries=st.lists(_hosts, max_size=3, unique=True),
    credentials=st.lists(st.tuples(_hosts, _user, _secret), max_size=3, unique_by=lambda c: c[0]),
    switches=st.fixed_dictionaries({"ALLOW_PUSH": st.booleans(), "ENABLE_MANIFEST_CACHE": st.booleans()}),
)
def test_env_to_toml_to_env_gives_the_same_configuration(
    tmp_path: Path, registries: list[str], credentials: list[tuple[str, str, str]], switches: dict[str, bool]
) -> None:
    base_env = {"HOME": str(tmp_path)}
    value, d1, d2 = encode_auth_registries(Credential(s, u, Secret(p)) for s, u, p in credentials)
    env = {
        **base_env,
        "REGISTRIES": " ".join(registries),
        "AUTH_REGISTRIES": value,
        "AUTH_REGISTRIES_DELIMITER": d1,
        "AUTH_REGISTRY_DELIMITER": d2,
        **{k: str(v).lower() for k, v in switches.items()},
    }
    from_env = load_config(None, env).config
    path = tmp_path / "converted.toml"
    path.write_text(tomlkit.dumps(render_config(from_env, default_config(base_env))))
    from_toml = load_config(None, base_env, path).config
    assert plain(from_toml) == plain(from_env)
    pairs, _ = export_env(from_toml)
    again = load_config(None, {**base_env, **dict(pairs)}).config
    assert plain(again) == plain(from_env)
    assert all(c.store is SecretStore.SEED_ENV for c in again.credentials)


def test_control_group_and_event_queue_come_from_toml_and_env_like_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('control_group = "admins"\nevent_queue = 64\n')
    from_file = load_config(None, {}, path).config
    assert (from_file.control_group, from_file.event_queue) == ("admins", 64)
    from_env = load_config(
        None, {"APPLIANCE_EVENT_QUEUE": "8", "APPLIANCE_CONTROL_GROUP": "ops"}, path
    ).config
    assert (from_env.control_group, from_env.event_queue) == ("ops", 8)
    with pytest.raises(ConfigError) as info:
        load_config(None, {"APPLIANCE_EVENT_QUEUE": "0"}, path)
    assert "APPLIANCE_EVENT_QUEUE" in str(info.value)
