"""Access input every client checks the same way: names, rule parts, token lifetimes, passwords; and the
client-side making of what crosses the socket instead of a secret (a password's hash, a robot token).

One copy for three readers: the engine reads its TOML file with these (``config.access_toml`` wraps
them with the file's key names), and the CLI and the dashboard check a form with them before they
call, so all three refuse the same input in the same words.  They live in the protocol because the
dashboard may import nothing else of the engine (tests/tui/test_wall.py).  Standard library only.

Nothing here keeps, logs or repeats a password or a token secret: an error names the field and says
what is wrong, never what was typed in a secret field.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import math
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass

# A name goes in a Basic auth header (no colon) and in ACL rules (``@`` marks a group, ``*`` is anyone).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ANYONE = "*"
ANONYMOUS = "anonymous"  # the identity of a client that presented none
ACTIONS = ("pull", "push", "tunnel", "admin")
EFFECTS = ("allow", "deny")


class AccessInputError(ValueError):
    """Input refused before anything is sent or stored; ``field`` names where (``who``, ``expires``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- names and rules -------------------------------------------------------------------------------


def check_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise AccessInputError(field, f"invalid name {value!r}: letters, digits, '.', '_' and '-', up to 128")
    return value


def check_identity_name(value: object, field: str) -> str:
    """A name something can log in as: ``anonymous`` is the client that did not."""
    name = check_name(value, field)
    if name == ANONYMOUS:
        raise AccessInputError(field, f"{ANONYMOUS!r} is reserved for clients that present no identity")
    return name


def check_who(who: str, groups: Collection[str], field: str = "who") -> str:
    """A rule's subject: an identity name, ``@group`` (an existing group), ``*`` or ``anonymous``."""
    if who.startswith("@"):
        check_name(who[1:], field)
        if who[1:] not in groups:
            raise AccessInputError(field, f"no group {who[1:]!r} in access.groups")
    elif who not in (ANYONE, ANONYMOUS):
        check_name(who, field)
    return who


def split_list(text: str) -> list[str]:
    """``pull, push`` or ``pull push`` as the words of a list (the CLI's and the forms' spelling)."""
    return [word for word in re.split(r"[,\s]+", text.strip()) if word]


def parse_actions(items: Iterable[str], field: str = "actions") -> tuple[str, ...]:
    actions: list[str] = []
    for text in items:
        action = text.strip().lower()
        if action not in ACTIONS:
            raise AccessInputError(field, f"unknown action {text!r}: expected pull, push, tunnel or admin")
        if action not in actions:
            actions.append(action)
    if not actions:
        raise AccessInputError(field, "empty: name at least one action")
    return tuple(actions)


def parse_effect(text: str, field: str = "effect") -> str:
    effect = text.strip().lower()
    if effect not in EFFECTS:
        raise AccessInputError(field, f"{text!r}: expected allow or deny")
    return effect


def check_glob(value: str, field: str = "repository") -> str:
    """A repository glob: path segments with ``*`` (within one) and ``**`` (across any number)."""
    text = value.strip().strip("/")
    if not text or any(c.isspace() or c in "?[]{}\\" for c in text) or "//" in text:
        raise AccessInputError(field, f"invalid repository glob {value!r}: path segments with * and ** only")
    return text


# --- times -------------------------------------------------------------------------------------------

# nginx's units (the config file's spelling); case matters: "m" is minutes and "M" is months.
_TIME_UNITS = {
    "y": 365 * 86400.0,
    "M": 30 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_TIME_PART = re.compile(r"(\d+)(ms|y|M|w|d|h|m|s)")
_PLAIN_NUMBER = re.compile(r"\d+(\.\d+)?")
_TIME_EXAMPLES = "expected e.g. 60d, 10m, 1h30m, 90s or seconds"


def parse_duration(value: str | int | float, field: str) -> float:
    """Seconds from an nginx time (``1h30m``, ``500ms``) or a non-negative number of seconds."""
    if isinstance(value, bool):
        raise AccessInputError(field, f"invalid time {value!r}: {_TIME_EXAMPLES}")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise AccessInputError(field, f"invalid time {value!r}: must be a non-negative number of seconds")
        return float(value)
    text = value.strip()
    if text.startswith("-"):
        raise AccessInputError(field, f"invalid time {value!r}: must not be negative")
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    position = 0
    total = 0.0
    for match in _TIME_PART.finditer(text):
        if match.start() != position:
            break
        total += int(match.group(1)) * _TIME_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise AccessInputError(field, f"invalid time {value!r}: {_TIME_EXAMPLES}")
    return total


def token_expiry(text: str, now: float, field: str = "expires") -> float | None:
    """When a new token expires (epoch seconds; None: never) from ``90d``, a date, or ``never``."""
    if text.strip().lower() == "never":
        return None
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        life = parse_duration(text, field)
        if life <= 0:
            raise AccessInputError(field, f"{text!r}: a token must live a while (or say never)") from None
        return now + life
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    if when.timestamp() <= now:
        raise AccessInputError(field, f"{text} is in the past")
    return when.timestamp()


# --- passwords: hashed by the client, so only the hash crosses the socket ------------------------------

SCRYPT_PREFIX = "$scrypt$"
# 2^15 x 8 x 128 bytes = 32 MiB and ~50 ms per check: OWASP's scrypt floor.
DEFAULT_LOG_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32


def check_password(password: str, again: str | None = None, field: str = "password") -> str:
    """A new password as typed (twice, when ``again`` is given); the errors never quote it."""
    if not password:
        raise AccessInputError(field, "an empty password was given")
    if again is not None and again != password:
        raise AccessInputError(field, "the two passwords differ")
    return password


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def scrypt_key(password: bytes, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 1024 * 1024, dklen=KEY_BYTES
    )


def hash_password(password: str, *, log_n: int = DEFAULT_LOG_N) -> str:
    """A new scrypt hash of ``password`` with a random salt (slow by design: call it off the loop)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = scrypt_key(password.encode("utf-8"), salt, log_n, SCRYPT_R, SCRYPT_P)
    return f"{SCRYPT_PREFIX}ln={log_n},r={SCRYPT_R},p={SCRYPT_P}${b64(salt)}${b64(key)}"


# --- robot tokens: made by the client, shown once, only the digest crosses the socket ------------------

TOKEN_PREFIX = "rat_"
TOKEN_ID_LENGTH = 8
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: ``secret`` is shown to the user once and never stored."""

    token_id: str
    secret: str
    digest: str

    def __repr__(self) -> str:
        return f"NewToken(token_id={self.token_id!r}, secret='********')"


def token_digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token() -> NewToken:
    """``rat_<id>_<secret>``: a public id (finds the record) and 32 random bytes."""
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(TOKEN_ID_LENGTH))
    secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, secret, token_digest(secret))
