"""The TOML file's valid keys per table, and typed access to its values (errors name file and key).

The simple keys are those of the key table (``config.keys``); this adds the hand-written tables' keys.
Part of the ``toml_*`` modules, the only code that reads or writes the TOML file.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from appliance.config.credentials import CREDENTIAL_KEYS
from appliance.config.keys import TABLES, table_keys
from appliance.config.model import RegistryConfig
from appliance.errors import ConfigError

# Each TOML table's valid keys ("" the top level); the simple ones come from the key table (keys.py).
VALID_KEYS = {table.name: table_keys(table) for table in TABLES}
TIER_KEYS = ("name", "regex", "ttl")
REGISTRY_KEYS = tuple(f.name for f in fields(RegistryConfig))
_ALL_KEYS = frozenset(
    (
        *(key for keys in VALID_KEYS.values() for key in keys),
        *TIER_KEYS,
        *REGISTRY_KEYS,
        *CREDENTIAL_KEYS,
    )
)


class TableReader:
    """Typed access to plain TOML data; every error names the file and the dotted key."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def at(self, key: str) -> str:
        return f"{self.source}: {key}"

    def check_keys(self, table: Mapping[str, Any], valid: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                if not close:
                    close = [
                        k for k in difflib.get_close_matches(key, _ALL_KEYS, n=1, cutoff=0.6) if k in valid
                    ]
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
                raise ConfigError(self.at(f"{prefix}{key}"), f"unknown key {key!r}{hint}")

    def string(self, table: Mapping[str, Any], key: str, prefix: str = "") -> str:
        value = table[key]
        if not isinstance(value, str):
            raise ConfigError(self.at(prefix + key), f"expected a string, got {_show(value)}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, prefix: str = "") -> bool:
        value = table[key]
        if not isinstance(value, bool):
            raise ConfigError(self.at(prefix + key), f"expected true or false, got {_show(value)}")
        return value

    def path(self, table: Mapping[str, Any], key: str, prefix: str = "") -> Path:
        text = self.string(table, key, prefix)
        if not text.strip():
            raise ConfigError(self.at(prefix + key), "empty path")
        path = Path(text).expanduser()
        if self.base_dir is not None and not path.is_absolute():
            path = self.base_dir / path
        return path

    def string_list(self, table: Mapping[str, Any], key: str, prefix: str = "") -> list[str]:
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(self.at(prefix + key), f"expected a list of strings, got {_show(value)}")
        return value

    def table(self, data: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        value = data[key]
        if not isinstance(value, dict):
            raise ConfigError(self.at(prefix + key), f"expected a table, got {_show(value)}")
        return value

    def tables(self, value: Any, key: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(self.at(key), f"expected an array of tables ([[{key}]]), got {_show(value)}")
        return value

    def number_or_str(self, table: Mapping[str, Any], key: str, prefix: str = "") -> Any:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(self.at(prefix + key), f"expected a number or a string, got {_show(value)}")
        return value


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
