"""Robot tokens: random secrets with an identifiable prefix, stored only as a hash, shown once.

A token reads ``rat_<id>_<secret>``: ``rat_`` lets secret scanners (and people) recognise one, the
public ``id`` (8 characters) finds its record without trying every hash, and the secret is 32 random
bytes.  With that much entropy a slow hash buys nothing, so the record keeps ``sha256:<hex>`` of the
whole token and a check is one hash and a constant-time comparison.  An unknown id is compared with a
dummy digest so that it costs the same as a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "rat_"
ID_LENGTH = 8
_TOKEN = re.compile(r"rat_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_DUMMY = "sha256:" + "0" * 64


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: ``secret`` is shown to the user once and never stored."""

    token_id: str
    secret: str
    digest: str

    def __repr__(self) -> str:
        return f"NewToken(token_id={self.token_id!r}, secret='********')"


def new_token() -> NewToken:
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, secret, digest_of(secret))


def digest_of(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_token(text: str) -> bool:
    return text.startswith(PREFIX)


def token_id_of(secret: str) -> str | None:
    """The public id of a well-formed token, else None."""
    match = _TOKEN.fullmatch(secret)
    return match.group(1) if match else None


def matches(secret: str, digest: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored digest (None: unknown id, always False)."""
    same = hmac.compare_digest(digest_of(secret), digest or _DUMMY)
    return same and digest is not None
