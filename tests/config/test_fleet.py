"""``[fleet]`` and FLEET_*: read from the file and the variables, checked once all sources are in."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config.fleet import FleetConfig, SecretSource, parse_store
from appliance.config.load import load_config
from appliance.config.seed_env_export import export_env
from appliance.errors import ConfigError

SECRET = "s3cr3t-never-shown"
TOKEN = "fleet-token-never-shown"
HOME = {"HOME": "/nonexistent-home"}


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> FleetConfig:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(environ={**HOME, **(environ or {})}, config_path=path).config.fleet


FULL = f"""
[fleet]
store = "s3://cache/prod/eu"
endpoint = "http://127.0.0.1:8333"
region = "eu-west-1"
access_key_id = "AKIA1"
secret_access_key = "{SECRET}"
replica_id = "node-a"
advertise_url = "http://10.0.0.5:3128"
token = "{TOKEN}"
max_size = "500g"
lease_ttl = "12s"
janitor_interval = "2m"
"""


def test_fleet_is_off_without_a_store(tmp_path: Path) -> None:
    assert not load(tmp_path, "").enabled
    assert not load(tmp_path, '[fleet]\nstore = ""\n').enabled


def test_every_fleet_key_is_read_from_the_file(tmp_path: Path) -> None:
    fleet = load(tmp_path, FULL)
    assert fleet.enabled
    assert fleet.location.bucket == "cache" and fleet.location.key("blobs/x") == "prod/eu/blobs/x"
    assert (fleet.endpoint, fleet.region, fleet.access_key_id) == (
        "http://127.0.0.1:8333",
        "eu-west-1",
        "AKIA1",
    )
    assert fleet.secret_access_key.reveal() == SECRET and fleet.secret_source is SecretSource.TOML
    assert (fleet.replica_id, fleet.advertise_url) == ("node-a", "http://10.0.0.5:3128")
    assert fleet.token.reveal() == TOKEN
    assert (fleet.max_size, fleet.lease_ttl, fleet.janitor_interval) == (500 * 1024**3, 12.0, 120.0)


def test_secrets_never_show_in_the_repr(tmp_path: Path) -> None:
    text = repr(load(tmp_path, FULL))
    assert SECRET not in text and TOKEN not in text


def test_variables_override_the_file_and_aws_names_are_honoured(tmp_path: Path) -> None:
    environ = {
        "FLEET_STORE": "s3://other",
        "FLEET_REPLICA_ID": "node-b",
        "FLEET_TOKEN": "from-env",
        "AWS_ACCESS_KEY_ID": "AKIA2",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "FLEET_LEASE_TTL": "9s",
        "FLEET_JANITOR_INTERVAL": "5s",
    }
    text = FULL.replace('access_key_id = "AKIA1"\n', "").replace(f'secret_access_key = "{SECRET}"\n', "")
    fleet = load(tmp_path, text, environ)
    assert fleet.location.bucket == "other" and fleet.location.prefix == ""
    assert (fleet.replica_id, fleet.token.reveal(), fleet.lease_ttl) == ("node-b", "from-env", 9.0)
    assert fleet.janitor_interval == 5.0
    assert (fleet.access_key_id, fleet.secret_access_key.reveal()) == ("AKIA2", "aws-secret")
    # FLEET_ names win over the AWS ones.
    fleet = load(tmp_path, text, {**environ, "FLEET_ACCESS_KEY_ID": "AKIA3", "FLEET_SECRET_ACCESS_KEY": "x"})
    assert (fleet.access_key_id, fleet.secret_access_key.reveal()) == ("AKIA3", "x")


def test_secrets_come_from_files_and_named_variables(tmp_path: Path) -> None:
    (tmp_path / "s3").write_text(SECRET + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    base = FULL.replace(f'secret_access_key = "{SECRET}"', 'secret_access_key_file = "s3"')
    fleet = load(tmp_path, base.replace(f'token = "{TOKEN}"', 'token_file = "token"'))
    assert fleet.secret_access_key.reveal() == SECRET and fleet.secret_source is SecretSource.FILE
    assert fleet.secret_reference == str(tmp_path / "s3") and fleet.token.reveal() == TOKEN
    fleet = load(
        tmp_path,
        FULL.replace(f'secret_access_key = "{SECRET}"', 'secret_access_key_env = "MY_S3"'),
        {"MY_S3": "from-var"},
    )
    assert fleet.secret_access_key.reveal() == "from-var" and fleet.secret_reference == "MY_S3"


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (('store = "s3://cache/prod/eu"', 'store = "http://cache"'), "fleet.store", "expected s3://"),
        (('store = "s3://cache/prod/eu"', 'store = "s3://Bad_Bucket"'), "fleet.store", "bucket name"),
        (('store = "s3://cache/prod/eu"', 'store = "s3://cache/../x"'), "fleet.store", "'..'"),
        ((f'token = "{TOKEN}"', ""), "fleet.token", "shared token"),
        (('advertise_url = "http://10.0.0.5:3128"', ""), "fleet.advertise_url", "peers reach"),
        (('advertise_url = "http://10.0.0.5:3128"', 'advertise_url = "10.0.0.5"'), "advertise_url", "http"),
        (('access_key_id = "AKIA1"', ""), "fleet.access_key_id", "or neither"),
        (('lease_ttl = "12s"', 'lease_ttl = "1s"'), "lease_ttl", "at least"),
        (('janitor_interval = "2m"', 'janitor_interval = "500ms"'), "janitor_interval", "at least"),
        (('replica_id = "node-a"', 'replica_id = "../x"'), "replica_id", "invalid replica_id"),
        (('endpoint = "http://127.0.0.1:8333"', 'endpoint = "http://u:p@h/"'), "endpoint", "no credentials"),
        (('region = "eu-west-1"', 'regoin = "x"'), "fleet.regoin", "did you mean 'region'"),
        (
            (
                f'secret_access_key = "{SECRET}"',
                f'secret_access_key = "{SECRET}"\nsecret_access_key_env = "X"',
            ),
            "secret_access_key",
            "exactly one",
        ),
    ],
)
def test_a_bad_fleet_setting_names_the_key_and_never_the_secret(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    old, new = change
    assert old in FULL
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, FULL.replace(old, new))
    assert where in caught.value.where and message in caught.value.message
    assert SECRET not in str(caught.value) and TOKEN not in str(caught.value)


def test_a_missing_replica_id_defaults_to_the_host_name(tmp_path: Path) -> None:
    fleet = load(tmp_path, FULL.replace('replica_id = "node-a"\n', ""))
    assert fleet.replica_id and parse_store(fleet.store, "x").bucket == "cache"


def test_export_env_writes_variables_that_recreate_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(FULL)
    config = load_config(environ=HOME, config_path=path).config
    pairs = dict(export_env(config)[0])
    again = load_config(environ={**HOME, **pairs}).config
    assert again.fleet == config.fleet.__class__(**{**_fields(config.fleet), **_sources(again.fleet)})


def _fields(fleet: FleetConfig) -> dict[str, object]:
    return {name: getattr(fleet, name) for name in fleet.__dataclass_fields__}


def _sources(fleet: FleetConfig) -> dict[str, object]:
    # The variables carry the secret itself, not where the file had it from.
    return {"secret_source": fleet.secret_source, "secret_reference": fleet.secret_reference}


def test_import_env_renders_a_fleet_table_that_loads_back_and_is_private(tmp_path: Path) -> None:
    import tomlkit

    from appliance.config.toml_edit import holds_secret, write_document
    from appliance.config.toml_render import render_config
    from appliance.config.values import default_config

    environ = {
        **HOME,
        "FLEET_STORE": "s3://cache/prod",
        "FLEET_ENDPOINT": "http://127.0.0.1:8333",
        "FLEET_ACCESS_KEY_ID": "AKIA1",
        "FLEET_SECRET_ACCESS_KEY": SECRET,
        "FLEET_REPLICA_ID": "node-a",
        "FLEET_ADVERTISE_URL": "http://10.0.0.5:3128",
        "FLEET_TOKEN": TOKEN,
        "FLEET_LEASE_TTL": "10s",
        "FLEET_JANITOR_INTERVAL": "5s",
    }
    config = load_config(environ=environ).config
    document = render_config(config, default_config(HOME))
    assert holds_secret(document)
    path = tmp_path / "config.toml"
    write_document(path, document)
    assert path.stat().st_mode & 0o077 == 0
    again = load_config(environ=HOME, config_path=path).config.fleet
    assert again == config.fleet.__class__(**{**_fields(config.fleet), "secret_source": SecretSource.TOML})
    assert "[fleet]" in tomlkit.dumps(document)
