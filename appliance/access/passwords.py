"""Password hashes: scrypt (stdlib) for the appliance's own, bcrypt for htpasswd files users bring.

A hash is a PHC-style string, ``$scrypt$ln=15,r=8,p=1$<salt>$<hash>`` (unpadded base64), so the
cost can be raised later without breaking stored hashes; bcrypt hashes are ``$2y$``/``$2b$``/
``$2a$`` as ``htpasswd -B`` writes them.  Checks are slow by design (tens of milliseconds): callers on
the event loop run ``verify_password`` in an executor (``access.verdicts``).  Nothing here logs, and
no error message carries a password or a hash.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

from appliance.config.access import MAX_SCRYPT_LOG_N

# Making a hash is the protocol's (the CLI and the dashboard hash before they call the engine);
# checking one is the engine's alone.
from appliance.protocol.access_input import DEFAULT_LOG_N as DEFAULT_LOG_N
from appliance.protocol.access_input import SALT_BYTES, SCRYPT_PREFIX
from appliance.protocol.access_input import b64 as _b64
from appliance.protocol.access_input import hash_password as hash_password
from appliance.protocol.access_input import scrypt_key as _scrypt

BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")


@dataclass(frozen=True, slots=True)
class ScryptParams:
    log_n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_scrypt(text: str) -> ScryptParams:
    """Split a ``$scrypt$`` hash; ValueError (naming no part of it) when it is not one."""
    parts = text.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "scrypt":
        raise ValueError("not a $scrypt$ hash")
    try:
        params = dict(item.split("=", 1) for item in parts[2].split(","))
        log_n, r, p = int(params["ln"]), int(params["r"]), int(params["p"])
        salt, key = _unb64(parts[3]), _unb64(parts[4])
    except (KeyError, ValueError):
        raise ValueError("malformed $scrypt$ hash") from None
    if not (1 <= log_n <= MAX_SCRYPT_LOG_N and 1 <= r <= 32 and 1 <= p <= 16 and salt and len(key) >= 16):
        raise ValueError("$scrypt$ hash parameters out of range")
    return ScryptParams(log_n, r, p, salt, key)


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the ``stored`` hash (constant-time comparison)."""
    encoded = password.encode("utf-8")
    if stored.startswith(SCRYPT_PREFIX):
        try:
            params = parse_scrypt(stored)
        except ValueError:
            return False
        key = _scrypt(encoded, params.salt, params.log_n, params.r, params.p)
        return hmac.compare_digest(key, params.key)
    if stored.startswith(BCRYPT_PREFIXES):
        import bcrypt

        try:
            # bcrypt reads only the first 72 bytes; 5.x refuses longer passwords instead.
            return bool(bcrypt.checkpw(encoded[:72], stored.encode("ascii")))
        except ValueError:
            return False
    return False


# A hash of a random password nobody kept (made once with ``hash_password(token_urlsafe(32))``): no
# password matches it, and checking against it costs what checking a default-cost hash costs.
DEFAULT_DUMMY = "$scrypt$ln=15,r=8,p=1$gLi81ZG7dlErvEBNn8CLQQ$rED9MKXouZsQwrcRoWW1nRJUWhigqC+PFCNTWlPbcYY"


def cost_of(stored: str) -> str:
    """The algorithm-and-cost part of a hash (``$scrypt$ln=15,r=8,p=1``, ``$2y$10``)."""
    if stored.startswith(SCRYPT_PREFIX):
        return stored.rsplit("$", 2)[0]
    return "$2b$" + stored[4:6]  # $2a$, $2b$ and $2y$ cost the same


class DummyHash:
    """A hash no password matches, at the cost of the users' own hashes: an unknown user's password
    is checked against it, so that it takes as long as a wrong password for a known user."""

    def __init__(self, like: str | None = None) -> None:
        self.like = cost_of(like) if like else cost_of(DEFAULT_DUMMY)
        self._value = DEFAULT_DUMMY if self.like == cost_of(DEFAULT_DUMMY) else None

    @property
    def ready(self) -> bool:
        return self._value is not None

    def value(self) -> str:
        """The dummy hash; made on first use when the cost is not the default (slow: off the loop)."""
        if self._value is None:
            self._value = self._make()
        return self._value

    def _make(self) -> str:
        password = secrets.token_urlsafe(32)
        if self.like.startswith(SCRYPT_PREFIX):
            params = dict(item.split("=", 1) for item in self.like[len(SCRYPT_PREFIX) :].split(","))
            salt = secrets.token_bytes(SALT_BYTES)
            key = _scrypt(password.encode(), salt, int(params["ln"]), int(params["r"]), int(params["p"]))
            return f"{self.like}${_b64(salt)}${_b64(key)}"
        import bcrypt

        rounds = int(self.like[4:6])
        made: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds, prefix=b"2b"))
        return made.decode("ascii")


def typical_cost(hashes: list[str]) -> str | None:
    """The most common algorithm-and-cost among ``hashes`` (None when there are none)."""
    if not hashes:
        return None
    costs = [cost_of(stored) for stored in hashes]
    best = max(set(costs), key=costs.count)
    return next(stored for stored in hashes if cost_of(stored) == best)
