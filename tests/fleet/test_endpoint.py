"""The internal endpoint's HMAC: signed by the fleet token, bound to the request, fresh."""

from __future__ import annotations

import pytest

from appliance.config.secret import Secret
from appliance.fleet.endpoint import MAX_SKEW, sign, verify

TOKEN = Secret("fleet-token-for-endpoint-tests")
TARGET = "/_fleet/v1/fills/sha256:" + "a" * 64 + "?offset=10"
NOW = 1_800_000_000.0


def test_a_signature_made_with_the_token_verifies_and_names_the_replica() -> None:
    header = sign(TOKEN, "replica-b", "GET", TARGET, NOW)
    assert verify(TOKEN, header, "GET", TARGET, NOW + 1) == "replica-b"
    assert TOKEN.reveal() not in header


@pytest.mark.parametrize(
    ("token", "method", "target", "now"),
    [
        (Secret("another-token"), "GET", TARGET, NOW),  # a client without the fleet's token
        (TOKEN, "HEAD", TARGET, NOW),  # another method
        (TOKEN, "GET", TARGET.replace("offset=10", "offset=0"), NOW),  # another offset
        (TOKEN, "GET", TARGET.replace("a" * 64, "b" * 64), NOW),  # another blob
        (TOKEN, "GET", TARGET, NOW + MAX_SKEW + 1),  # replayed too late
        (TOKEN, "GET", TARGET, NOW - MAX_SKEW - 1),  # from too far in the future
        (Secret(""), "GET", TARGET, NOW),  # fleet token unset: nothing verifies
    ],
)
def test_a_signature_does_not_verify_for_anything_else(
    token: Secret, method: str, target: str, now: float
) -> None:
    header = sign(TOKEN, "replica-b", "GET", TARGET, NOW)
    assert verify(token, header, method, target, now) is None


@pytest.mark.parametrize(
    "header", [None, "", "v1", "v2 b 1 x", "v1 b notanumber x", "Bearer abc", "v1 b 1 " + "0" * 64]
)
def test_malformed_or_forged_headers_do_not_verify(header: str | None) -> None:
    assert verify(TOKEN, header, "GET", TARGET, NOW) is None
