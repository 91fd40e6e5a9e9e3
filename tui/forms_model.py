"""What the editor's forms send (no Textual): field texts -> protocol edits, and errors -> fields.

The engine is the validator (it checks the whole resulting file before writing anything); the form
only shapes input: comma lists into lists, the tri-state choices into true/false/unset, and an
empty optional field into "unset" when editing.  ``field_for()`` maps the ``where`` of a refusal
(``/etc/appliance.toml: registries[3].host``) to the form field that should show it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance import protocol as p
from tui.format import seconds_setting

REGISTRY_FIELDS = (
    "host",
    "aliases",
    "auth_hosts",
    "scheme",
    "insecure",
    "ca_file",
    "allow_push",
    "manifest_cache",
    "tag_ttl",
)
CREDENTIAL_FIELDS = ("scope", "username", "password", "store", "reference")
TRISTATE = ("default", "yes", "no")  # unset (the global setting), true, false


class FormError(ValueError):
    """Input the form refuses before asking the engine; ``field`` names where to show it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class RegistryFormValues:
    """The registry form's fields, as typed."""

    host: str = ""
    aliases: str = ""
    auth_hosts: str = ""
    scheme: str = "https"
    insecure: bool = False
    ca_file: str = ""
    allow_push: str = "default"
    manifest_cache: str = "default"
    tag_ttl: str = ""

    @classmethod
    def from_view(cls, view: p.RegistryView) -> RegistryFormValues:
        return cls(
            host=view.host,
            aliases=", ".join(view.aliases),
            auth_hosts=", ".join(view.auth_hosts),
            scheme=view.scheme,
            insecure=view.insecure,
            ca_file=view.ca_file or "",
            allow_push=_tristate_text(view.allow_push),
            manifest_cache=_tristate_text(view.manifest_cache),
            tag_ttl=seconds_setting(view.tag_ttl),
        )


def _tristate_text(value: bool | None) -> str:
    return "default" if value is None else ("yes" if value else "no")


def _tristate(value: str) -> bool | None:
    return {"default": None, "yes": True, "no": False}[value]


def _words(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text.strip()) if part]


def registry_edit(form: RegistryFormValues, *, adding: bool) -> p.RegistryEdit:
    """The edit for the engine.  Adding sends only what was filled in; editing unsets emptied keys."""
    if not form.host.strip():
        raise FormError("host", "a host is required (e.g. registry.example.com or host:5000)")
    values: dict[str, Any] = {"host": form.host.strip()}
    unset: list[str] = []

    def put(key: str, value: Any, empty: bool) -> None:
        if not empty:
            values[key] = value
        elif not adding:
            unset.append(key)

    put("aliases", _words(form.aliases), not _words(form.aliases))
    put("auth_hosts", _words(form.auth_hosts), not _words(form.auth_hosts))
    put("scheme", form.scheme, adding and form.scheme == "https")
    put("insecure", form.insecure, adding and not form.insecure)
    put("ca_file", form.ca_file.strip(), not form.ca_file.strip())
    for key, text in (("allow_push", form.allow_push), ("manifest_cache", form.manifest_cache)):
        choice = _tristate(text)
        put(key, choice, choice is None)
    ttl = form.tag_ttl.strip()
    if ttl and re.fullmatch(r"\d+(\.\d+)?", ttl):
        put("tag_ttl", float(ttl) if "." in ttl else int(ttl), False)
    else:
        put("tag_ttl", ttl, not ttl)
    if not adding:
        values.pop("host")
    return p.RegistryEdit(values=values, unset=tuple(unset))


def credential_edit(scope: str, username: str, password: str, store: str, reference: str) -> p.CredentialEdit:
    if not scope.strip():
        raise FormError("scope", "a scope is required: host[:port] or host[:port]/repository/prefix")
    if not username.strip():
        raise FormError("username", "a username is required")
    try:
        where = p.SecretStoreName(store)
    except ValueError:
        raise FormError("store", f"choose one of {', '.join(p.SecretStoreName)}") from None
    if where is p.SecretStoreName.FILE:
        if not reference.strip():
            raise FormError("reference", "the file store needs the path of a file holding the password")
        return p.CredentialEdit(scope.strip(), username.strip(), where, None, reference.strip())
    if not password:
        raise FormError("password", "a password is required")
    return p.CredentialEdit(scope.strip(), username.strip(), where, password, None)


def field_for(where: str, fields: Iterable[str]) -> str | None:
    """The form field a refusal's ``where`` points at, if any (``...registries[2].tag_ttl`` -> tag_ttl)."""
    tail = where.rsplit(":", 1)[-1].strip() if where else ""
    candidates = set(fields)
    if tail in candidates:
        return tail
    match = re.search(r"\.([a-z_]+)$", tail)
    if match and match.group(1) in candidates:
        return match.group(1)
    for name in candidates:
        if re.search(rf"\b{re.escape(name)}\b", where):
            return name
    return None


def describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
