"""The key table drives every format: each key round-trips TOML -> model -> TOML -> env -> model.

Each test takes every row of ``config.keys.KEYS``, so a key added to the table is covered without a
test of its own; a key whose kind has no sample here fails until one is given.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from appliance.config.keys import KEYS, TABLES, ConfigKey, Export, Kind, Mask, get
from appliance.config.model import Config
from appliance.config.seed_env import ALL_VARS, HAND_WRITTEN_VARS, apply_env
from appliance.config.seed_env_export import export_env
from appliance.config.toml_read import config_from_document, parse_text
from appliance.config.toml_render import render_config
from appliance.config.values import default_config
from appliance.control.views import config_view, env_view
from appliance.protocol import ConfigView

ROOT = Path(__file__).resolve().parents[2]
HOME = {"HOME": "/nonexistent-home"}
SECRET = "s3cret-pw"

# A value each kind takes in the file that is not any key's default.
KIND_SAMPLES: dict[Kind, Any] = {
    Kind.PATH: "/srv/appliance/elsewhere",
    Kind.SIZE: "3g",
    Kind.TIME: "1h30m",
    Kind.LISTEN: "127.0.0.1:4000",
    Kind.RESOLVE: ["registry.test=127.0.0.1:5000"],
    Kind.TUNNEL_MODE: "none",
    Kind.TUNNEL_HOSTS: ["github.com", "*.example.com:8443"],
}
# Keys whose values are checked by their own parser (TEXT, WHOLE) or that need another one.
KEY_SAMPLES: dict[str, Any] = {
    "control_group": "appliance-admins",
    "event_queue": 7,
    "upstream_proxy": f"http://proxy-user:{SECRET}@proxy.test:3128",
    "log_format": "json",
    "cache.pull_ahead": 0,
    "limits.connections_per_source": 7,
    "limits.max_connections": 2000,
}
COMPANIONS: dict[str, dict[str, Any]] = {
    "tls_cert_file": {"tls_key_file": "/srv/tls.key"},
    "tls_key_file": {"tls_cert_file": "/srv/tls.crt"},
    "tunnel.hosts": {"tunnel": {"mode": "list"}},
}


def sample(key: ConfigKey, defaults: Config) -> Any:
    if key.dotted in KEY_SAMPLES:
        return KEY_SAMPLES[key.dotted]
    if key.kind is Kind.BOOL:
        return not get(defaults, key)
    assert key.kind in KIND_SAMPLES, f"give {key.dotted} ({key.kind}) a sample value in this test"
    return KIND_SAMPLES[key.kind]


def document_setting(key: ConfigKey, value: Any) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, extra in COMPANIONS.get(key.dotted, {}).items():
        document[name] = extra
    table = document.setdefault(key.table, {}) if key.table else document
    table[key.name] = value
    return document


def from_toml(document: dict[str, Any]) -> Config:
    text = tomlkit.dumps(document)
    return config_from_document(parse_text(text, "test.toml"), default_config(HOME), HOME).config


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.dotted)
def test_every_key_round_trips_toml_model_toml_env_model(key: ConfigKey) -> None:
    defaults = default_config(HOME)
    config = from_toml(document_setting(key, sample(key, defaults)))
    value = get(config, key)
    assert value != get(defaults, key), "the sample must differ from the default, or nothing is proven"

    rendered = tomlkit.dumps(render_config(config, defaults))
    assert get(from_toml(tomlkit.parse(rendered).unwrap()), key) == value

    pairs, warnings = export_env(config)
    names = [name for name, _ in pairs]
    if key.export is Export.NONE or key.export is Export.FLAG:
        assert not key.env
        assert any(warning.startswith(f"{key.dotted} has no env var") for warning in warnings), warnings
        return
    if key.export is Export.LOCAL:
        assert not key.env and not any(key.dotted in warning for warning in warnings)
        return
    if key.env:
        assert names.count(key.env[0]) == 1 and not set(key.env[1:]) & set(names)
    again = apply_env(default_config(HOME), dict(pairs)).config
    assert get(again, key) == value


@pytest.mark.parametrize("key", [key for key in KEYS if key.view], ids=lambda key: key.dotted)
def test_every_viewed_key_shows_its_value_on_the_control_socket(key: ConfigKey) -> None:
    defaults = default_config(HOME)
    config = from_toml(document_setting(key, sample(key, defaults)))
    shown, default_shown = config_view(config, False), config_view(defaults, False)
    assert getattr(shown, key.view) != getattr(default_shown, key.view)
    assert ConfigView.from_json(json.loads(json.dumps(shown.to_json()))) == shown


@pytest.mark.parametrize("key", [key for key in KEYS if key.mask is not Mask.NONE], ids=lambda k: k.dotted)
def test_a_masked_key_never_shows_its_secret_in_the_views(key: ConfigKey) -> None:
    config = from_toml(document_setting(key, sample(key, default_config(HOME))))
    assert SECRET in str(get(config, key))
    assert SECRET not in json.dumps(config_view(config, False).to_json())
    assert SECRET not in json.dumps(env_view(config).to_json())


def test_every_config_view_setting_comes_from_a_key() -> None:
    hand_written = {"config_path", "editable", "tunnel", "registries", "credentials"}
    viewed = [key.view for key in KEYS if key.view]
    assert len(viewed) == len(set(viewed))
    assert set(viewed) == {field.name for field in fields(ConfigView)} - hand_written


def test_every_model_field_is_a_key_or_a_table_or_hand_written() -> None:
    """A model field without a row would be a setting no file, variable or view knows of."""
    for table in TABLES:
        model = Config() if not table.name else getattr(Config(), table.name)
        known = {name for key in KEYS if key.table == table.name for name in key.fields}
        known |= set(table.hand_written)
        if not table.name:
            known |= {t.name for t in TABLES if t.name} | {"config_path"}
        assert {field.name for field in fields(model)} == known, table.name or "top level"


def test_every_variable_read_is_written_back_by_export_env() -> None:
    defaults = default_config(HOME)
    environ = {
        "REGISTRIES": "quay.io",
        "AUTH_REGISTRIES": "quay.io:bot:pw",
        "MANIFEST_CACHE_PRIMARY_REGEX": "stable",
        "MANIFEST_CACHE_PRIMARY_TIME": "5m",
        "MANIFEST_CACHE_SECONDARY_REGEX": "v.*",
        "MANIFEST_CACHE_SECONDARY_TIME": "1d",
        "TUNNEL": "none",
        "ALLOW_CLIENTS": "10.0.0.0/8",
        "FLEET_STORE": "s3://cache/fleet",
        "FLEET_ENDPOINT": "http://127.0.0.1:8333",
        "FLEET_REGION": "eu-west-1",
        "FLEET_ACCESS_KEY_ID": "key",
        "FLEET_SECRET_ACCESS_KEY": "secret",
        "FLEET_REPLICA_ID": "a",
        "FLEET_ADVERTISE_URL": "http://10.0.0.5:3128",
        "FLEET_TOKEN": "token",
        "FLEET_MAX_SIZE": "500g",
        "FLEET_LEASE_TTL": "10s",
        "FLEET_JANITOR_INTERVAL": "5s",
    }
    for key in KEYS:
        if key.env:
            config = from_toml(document_setting(key, sample(key, defaults)))
            environ.update(pair for pair in export_env(config)[0] if pair[0] == key.env[0])
    exported = {name for name, _ in export_env(apply_env(defaults, environ).config)[0]}
    aliases = {name for key in KEYS for name in key.env[1:]}
    # Read for the seed's sake and ignored; delimiters are written only when a credential needs them.
    read_only = {"PROXY_REQUEST_BUFFERING", "AUTH_REGISTRIES_DELIMITER", "AUTH_REGISTRY_DELIMITER"}
    assert set(ALL_VARS) - aliases - read_only <= exported
    assert set(HAND_WRITTEN_VARS) | {name for key in KEYS for name in key.env} == set(ALL_VARS)


def test_every_variable_and_key_is_documented() -> None:
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    example = (ROOT / "config.example.toml").read_text()
    for key in KEYS:
        for name in key.env:
            assert f"`{name}`" in configuration, name
        assert f"{key.name} =" in example, key.dotted


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.dotted)
def test_a_row_says_nothing_its_formats_would_ignore(key: ConfigKey) -> None:
    assert bool(key.env) == (key.export in (Export.ALWAYS, Export.CHANGED))
    if key.kind is Kind.WHOLE:
        assert key.parse is not None  # an integer's range is the key's own
    elif key.kind is not Kind.TEXT:
        assert key.parse is None  # the kind alone says how the value reads
