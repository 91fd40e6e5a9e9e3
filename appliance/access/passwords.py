"""Password hashes: scrypt (stdlib) for the appliance's own, bcrypt for htpasswd files users bring.

A hash is a PHC-style string, ``$scrypt$ln=15,r=8,p=1$<salt>$<hash>`` (unpadded base64), so the
cost can be raised later without breaking stored hashes; bcrypt hashes are ``$2y$``/``$2b$``/
``$2a$`` as ``htpasswd -B`` writes them.  Checks are slow by design (tens of milliseconds): callers on
the event loop run ``verify_password`` in an executor (``access.verdicts``).  Nothing here logs, and
no error message carries a password or a hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from appliance.config.access import MAX_SCRYPT_LOG_N

SCRYPT_PREFIX = "$scrypt$"
BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
# 2^15 x 8 x 128 bytes = 32 MiB and ~50 ms per check: OWASP's scrypt floor.
DEFAULT_LOG_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class ScryptParams:
    log_n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, log_n: int = DEFAULT_LOG_N) -> str:
    """A new scrypt hash of ``password`` with a random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password.encode("utf-8"), salt, log_n, SCRYPT_R, SCRYPT_P)
    return f"{SCRYPT_PREFIX}ln={log_n},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(key)}"


def _scrypt(password: bytes, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 1024 * 1024, dklen=KEY_BYTES
    )


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


class DummyHash:
    """A hash no password matches, with the same cost as real ones: an unknown user is checked
    against it so that it takes as long as a wrong password for a known one."""

    def __init__(self, log_n: int = DEFAULT_LOG_N) -> None:
        self.log_n = log_n
        self._value: str | None = None

    def value(self) -> str:
        if self._value is None:
            self._value = hash_password(secrets.token_urlsafe(32), log_n=self.log_n)
        return self._value
