"""Robot tokens: random secrets with an identifiable prefix, stored only as a hash, shown once.

A token reads ``rat_<id>_<secret>``: ``rat_`` lets secret scanners (and people) recognise one, the
public ``id`` (8 characters) finds its record without trying every hash, and the secret is 32 random
bytes.  With that much entropy a slow hash buys nothing, so the record keeps ``sha256:<hex>`` of the
whole token and a check is one hash and a constant-time comparison.  An unknown id is compared with a
dummy digest so that it costs the same as a wrong secret.
"""

from __future__ import annotations

import hmac
import re

# Making a token is the protocol's (the CLI and the dashboard make it, the engine gets its digest).
from appliance.protocol.access_input import TOKEN_PREFIX as PREFIX
from appliance.protocol.access_input import NewToken as NewToken
from appliance.protocol.access_input import new_token as new_token
from appliance.protocol.access_input import token_digest as digest_of

_TOKEN = re.compile(r"rat_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")
_DUMMY = "sha256:" + "0" * 64


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
