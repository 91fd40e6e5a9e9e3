"""What the access screen shows and sends (no Textual): rows from ``AccessView``, forms -> edits.

The checks are the protocol's (``appliance.protocol.access_input``), the ones the CLI makes and the
engine's config reader applies, so a form refuses exactly what ``appliance user|token|acl`` refuses,
in the same words, before anything is sent; the engine then checks the whole resulting file again
(a host it cannot parse comes back as a refusal shown under its field).  As with the CLI, a password
is hashed here and a token is made here: only a ``$scrypt$`` hash or a ``sha256:`` digest ever
crosses the socket.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from dataclasses import dataclass

from appliance.protocol import access as pa
from appliance.protocol import access_input as shared
from tui.forms_model import FormError

USER_FIELDS = ("name", "password", "again", "groups")
TOKEN_FIELDS = ("name", "expires")
RULE_FIELDS = ("who", "actions", "registry", "repository", "effect", "position")
DEFAULT_TOKEN_LIFE = "90d"  # as ``appliance token create``


def _field(exc: shared.AccessInputError, fields: Collection[str], default: str) -> FormError:
    return FormError(exc.field if exc.field in fields else default, exc.message)


# --- forms -> edits ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewUser:
    """A checked user form: ``password`` still in clear, to be hashed off the event loop."""

    name: str
    password: str
    groups: tuple[str, ...]

    def __repr__(self) -> str:
        return f"NewUser(name={self.name!r}, groups={self.groups!r})"

    def edit(self) -> pa.UserEdit:
        """The wire record (slow: scrypt by design, so run it in a thread)."""
        return pa.UserEdit(self.name, shared.hash_password(self.password), self.groups)


def check_user(name: str, password: str, again: str, groups: str, *, new: bool = True) -> NewUser:
    """The user form as ``appliance user add`` checks it (``new=False``: only the password changes)."""
    try:
        checked = shared.check_identity_name(name.strip(), "name")
        shared.check_password(password, again, "password")
        members = tuple(shared.check_name(group, "groups") for group in shared.split_list(groups))
    except shared.AccessInputError as exc:
        raise _field(exc, USER_FIELDS, "name") from None
    return NewUser(checked, password, members if new else ())


def token_edit(name: str, expires: str, now: float) -> tuple[pa.TokenEdit, shared.NewToken]:
    """A new token for ``name`` as ``appliance token create`` makes it: the record and the one-time secret."""
    try:
        checked = shared.check_identity_name(name.strip(), "name")
        until = shared.token_expiry(expires or DEFAULT_TOKEN_LIFE, now, "expires")
    except shared.AccessInputError as exc:
        raise _field(exc, TOKEN_FIELDS, "name") from None
    made = shared.new_token()
    return pa.TokenEdit(checked, made.token_id, made.digest, now, until), made


def rule_edit(
    who: str,
    actions: str,
    registry: str,
    repository: str,
    effect: str,
    position: str,
    groups: Collection[str],
) -> pa.RuleEdit:
    """The rule form as ``appliance acl add`` sends it (``position`` blank: at the end)."""
    try:
        subject = shared.check_who(who.strip(), groups, "who")
        wanted = shared.parse_actions(shared.split_list(actions), "actions")
        glob = shared.check_glob(repository or "**", "repository")
        decided = shared.parse_effect(effect or "allow", "effect")
    except shared.AccessInputError as exc:
        raise _field(exc, RULE_FIELDS, "who") from None
    place: int | None = None
    if position.strip():
        if not position.strip().isdigit():
            raise FormError("position", f"{position.strip()!r}: a rule number (0 is the first), or blank")
        place = int(position.strip())
    return pa.RuleEdit(
        who=subject,
        actions=wanted,
        registry=registry.strip() or shared.ANYONE,
        repository=glob,
        effect=decided,
        position=place,
    )


# --- views -> rows -----------------------------------------------------------------------------


def date(epoch: float | None, none: str) -> str:
    if epoch is None:
        return none
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def token_prefix(token_id: str) -> str:
    """How a token starts (what a user finds in their CI settings), never more of it."""
    return f"{shared.TOKEN_PREFIX}{token_id}_…"


def user_row(user: pa.UserView) -> tuple[str, str, str]:
    source = "config file" if user.source == "config" else user.source
    return (user.name, ", ".join(user.groups) or "-", source)


def group_row(group: pa.GroupView) -> tuple[str, str]:
    return (group.name, ", ".join(group.members) or "-")


def token_row(token: pa.TokenView) -> tuple[str, str, str, str, str]:
    expires = "EXPIRED" if token.expired else date(token.expires, "never")
    return (
        token_prefix(token.id),
        token.name,
        date(token.created, "?"),
        expires,
        date(token.last_used, "not since start"),
    )


def rule_row(rule: pa.RuleView) -> tuple[str, str, str, str, str, str]:
    return (
        str(rule.index),
        rule.effect,
        rule.who,
        ",".join(rule.actions),
        rule.registry,
        rule.repository,
    )


def summary(view: pa.AccessView) -> str:
    state = "on" if view.enabled else "OFF (every client the network floor lets in is allowed)"
    networks = ", ".join(view.allow_clients) or "-"
    return f"access control {state} · first match decides, no match denies · clients from {networks}"
