"""Plain helpers: number formatting, the forms' mapping to protocol edits, socket resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import protocol as p
from tui import format as fmt
from tui.forms_model import (
    REGISTRY_FIELDS,
    FormError,
    RegistryFormValues,
    credential_edit,
    field_for,
    registry_edit,
)
from tui.settings import SettingsError, default_socket, resolve_socket, start_command
from tui.widgets.event_table import COLUMNS, column_widths


def test_sizes_durations_and_fingerprints_read_naturally() -> None:
    assert fmt.size(0) == "0 B" and fmt.size(1536) == "1.5 KiB" and fmt.size(3 * 1024**3) == "3.0 GiB"
    assert fmt.progress(61 * 1024**2, 148 * 1024**2) == "61.0/148.0 MiB"
    assert fmt.duration(0.012) == "12ms" and fmt.duration(2.44) == "2.4s" and fmt.duration(185) == "3m05s"
    assert fmt.uptime(3725) == "1h02m" and fmt.uptime(2 * 86400 + 7200) == "2d02h"
    assert fmt.fingerprint("ab" * 32) == "AB:AB:AB:AB:…:AB:AB:AB:AB"
    assert fmt.reference("sha256:" + "0123456789abcdef" * 4, 13) == "@0123456789ab"
    assert fmt.seconds_setting(5400) == "1h30m" and fmt.seconds_setting(None) == ""


@pytest.mark.parametrize("width", [60, 78, 100, 106, 108, 200])
def test_request_columns_always_fit_the_table_width(width: int) -> None:
    widths = column_widths(width)
    assert sum(widths.values()) + 2 * len(widths) + 2 <= max(width, 78 if width < 78 else width) or width < 78
    assert {"time", "status", "who", "reference", "size"} <= set(widths)
    if width >= 100:
        assert "took" in widths
    if width >= 106:  # the table's width in a 160-column terminal
        assert "registry" in widths and "repository" in widths
    if width >= 78:
        assert widths["who"] >= 8  # room for a name, even at 80 columns
    assert len(widths) in (len(COLUMNS), len(COLUMNS) - 1, len(COLUMNS) - 2)


def test_adding_sends_only_what_was_filled_in() -> None:
    form = RegistryFormValues(
        host=" harbor.lab:8443 ", aliases="harbor, harbor.local", tag_ttl="90m", allow_push="yes"
    )
    edit = registry_edit(form, adding=True)
    assert edit.values == {
        "host": "harbor.lab:8443",
        "aliases": ["harbor", "harbor.local"],
        "allow_push": True,
        "tag_ttl": "90m",
    }
    assert edit.unset == ()


def test_editing_unsets_what_was_emptied_and_never_renames() -> None:
    view = p.RegistryView("quay.io", aliases=("q",), tag_ttl=600.0, allow_push=False)
    form = RegistryFormValues.from_view(view)
    assert form.tag_ttl == "10m" and form.allow_push == "no"
    emptied = RegistryFormValues(host="quay.io", scheme="https", allow_push="default", manifest_cache="no")
    edit = registry_edit(emptied, adding=False)
    assert "host" not in edit.values
    assert edit.values["manifest_cache"] is False
    assert {"aliases", "tag_ttl", "allow_push", "ca_file"} <= set(edit.unset)


def test_forms_refuse_missing_essentials_with_the_field_named() -> None:
    with pytest.raises(FormError) as caught:
        registry_edit(RegistryFormValues(host="  "), adding=True)
    assert caught.value.field == "host"
    with pytest.raises(FormError) as caught:
        credential_edit("ghcr.io", "bot", "", "toml", "")
    assert caught.value.field == "password"
    with pytest.raises(FormError) as caught:
        credential_edit("ghcr.io", "bot", "", "file", "")
    assert caught.value.field == "reference"
    edit = credential_edit("ghcr.io/team", "bot", "pw", "keyring", "ignored")
    assert edit.store is p.SecretStoreName.KEYRING and edit.reference is None
    assert "pw" not in repr(edit)


def test_refusals_point_at_the_field_named_in_where() -> None:
    assert field_for("/etc/a.toml: registries[3].tag_ttl", REGISTRY_FIELDS) == "tag_ttl"
    assert field_for("registries[0].host", REGISTRY_FIELDS) == "host"
    assert field_for("aliases", REGISTRY_FIELDS) == "aliases"
    assert field_for("/etc/a.toml", REGISTRY_FIELDS) is None


def test_socket_comes_from_the_flag_then_the_config_file_then_the_default(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "c"),
    }
    assert resolve_socket(Path("/run/x.sock"), None, env) == Path("/run/x.sock")
    config = tmp_path / "a.toml"
    config.write_text('# comment\ncontrol_socket = "sock/control.sock"\n')
    assert resolve_socket(None, config, env) == tmp_path / "sock/control.sock"
    assert (
        resolve_socket(None, None, env)
        == default_socket(env)
        == tmp_path / "data/registry-appliance/control.sock"
    )
    config.write_text("control_socket = [")
    with pytest.raises(SettingsError):
        resolve_socket(None, config, env)
    assert start_command(Path("/etc/my file.toml"), None) == "appliance run --config '/etc/my file.toml'"
