"""Properties over the config loaders: any TOML document or seed environment is a Config or a ConfigError.

Never another exception (a ValueError, KeyError or TypeError from a value of the wrong shape would
be a traceback at start-up instead of a message naming the key), and a ConfigError names where.
"""

from __future__ import annotations

from typing import Any

import tomlkit
from hypothesis import example, given
from hypothesis import strategies as st

from appliance.config.model import Config
from appliance.config.seed_env import ALL_VARS, apply_env
from appliance.config.toml_keys import TIER_KEYS, VALID_KEYS
from appliance.config.toml_read import config_from_document, parse_text
from appliance.errors import ConfigError
from tests.fuzz.conftest import run_property

# Keyring lookups would talk to the desktop's secret service: the keyring store is left out.
SAFE_CREDENTIAL_KEYS = ("scope", "username", "password", "password_env")
REGISTRY_KEYS = (
    "host",
    "aliases",
    "auth_hosts",
    "scheme",
    "insecure",
    "allow_push",
    "manifest_cache",
    "tag_ttl",
)
# Values that look like what the keys take (sizes, durations, hosts, booleans), and some that do not.
LIKELY = st.sampled_from(
    [
        "",
        "0",
        "1",
        "-1",
        "10GiB",
        "1h",
        "30s",
        "1.5",
        "true",
        "no",
        "yes",
        "registry.test",
        "a:b:c",
        "*",
        "[::1]:0",
        # They pass str.isdigit(); int() refuses the first two and reads the last.
        "²",
        "1²",
        "٣",
    ]
)
TEXT = st.one_of(LIKELY, st.text(max_size=20))
SCALARS = st.one_of(
    TEXT,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def _table(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), VALUES, max_size=4)


DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        **{key: VALUES for key in VALID_KEYS[""] if key not in VALID_KEYS},
        **{table: st.one_of(_table(keys), VALUES) for table, keys in VALID_KEYS.items() if table},
        "manifest_cache": st.one_of(
            _table(VALID_KEYS["manifest_cache"]),
            st.fixed_dictionaries({"tiers": st.lists(_table(TIER_KEYS), max_size=2)}),
        ),
        "registries": st.one_of(st.lists(_table(REGISTRY_KEYS), max_size=3), VALUES),
        "credentials": st.one_of(st.lists(_table(SAFE_CREDENTIAL_KEYS), max_size=3), VALUES),
    },
)


def test_any_toml_document_is_a_config_or_a_config_error_naming_where() -> None:
    @given(document=DOCUMENTS, environ=st.dictionaries(st.sampled_from(["X", "PW"]), TEXT, max_size=2))
    def prop(document: dict[str, Any], environ: dict[str, str]) -> None:
        try:
            text = tomlkit.dumps(document)
        except (ValueError, TypeError):
            return  # not representable as TOML (tomlkit's own limits): nothing to load
        try:
            config_from_document(parse_text(text, "fuzz.toml"), Config(), environ)
        except ConfigError as exc:
            assert exc.where and exc.message, exc

    run_property(prop)


def test_any_text_is_a_toml_document_or_a_syntax_error_with_its_line() -> None:
    @given(text=st.text(max_size=200))
    def prop(text: str) -> None:
        try:
            parse_text(text, "fuzz.toml")
        except ConfigError as exc:
            assert exc.where.startswith("fuzz.toml"), exc

    run_property(prop)


def test_any_seed_environment_is_a_config_or_a_config_error_naming_the_variable() -> None:
    @given(environ=st.dictionaries(st.sampled_from(ALL_VARS), TEXT, max_size=5))
    @example(environ={"APPLIANCE_PULL_AHEAD": "²"})  # found by `make fuzz`: ValueError, not ConfigError
    @example(environ={"APPLIANCE_EVENT_QUEUE": "1²", "LISTEN": "0.0.0.0:²"})
    def prop(environ: dict[str, str]) -> None:
        try:
            apply_env(Config(), environ)
        except ConfigError as exc:
            assert exc.where, exc

    run_property(prop)
