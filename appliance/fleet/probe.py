"""The start-up capability probe: does the store honour the conditions the fleet's safety rests on?

Leases, create-before-publish and safe release are only as good as the store's conditional writes.
Some S3 gateways accept ``If-None-Match`` / ``If-Match`` and silently ignore them; with such a store
two replicas would both "win" a lease and overwrite each other.  So before fleet mode starts, the
replica tries each condition on a scratch object (``probe/<replica_id>-<nonce>``) and refuses fleet
mode, naming the check, when one does not hold:

1. ``conditional create``: a second PUT with ``If-None-Match: *`` must be refused (412 or 409);
2. ``conditional overwrite``: a PUT with a wrong ``If-Match`` must be refused (lease renewal);
3. ``conditional delete``: a DELETE with a wrong ``If-Match`` must be refused (lease release);
4. ``range read``: a GET with ``Range`` must answer 206 with just those bytes (resumed follows).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from appliance.errors import ConfigError
from appliance.fleet.bucket import Bucket, BucketError, PreconditionFailed

# An ETag no object has: S3 ETags are MD5s (or MD5-of-MD5s with a part count) in quotes.
_WRONG_ETAG = '"00000000000000000000000000000000"'
_PAYLOAD = b"registry-appliance fleet probe 0123456789"


class FleetRefused(ConfigError):
    """The store cannot run fleet mode safely (or cannot be reached); ``check`` names what failed."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__("fleet.store", f"fleet mode refused: {check}: {message}")
        self.check = check


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The checks that passed, in order (all of them when ``probe`` returns)."""

    checks: tuple[str, ...]


async def probe(bucket: Bucket, replica_id: str) -> ProbeResult:
    """Run every check; raises ``FleetRefused`` at the first that fails."""
    name = f"probe/{replica_id}-{secrets.token_hex(6)}"
    passed: list[str] = []
    try:
        check = "write access"
        try:
            etag = await bucket.create(name, _PAYLOAD)
        except BucketError as exc:
            raise FleetRefused(check, f"cannot create a probe object: {exc}") from None
        passed.append(check)

        check = "conditional create"
        try:
            await bucket.create(name, b"second")
        except PreconditionFailed:
            passed.append(check)
        except BucketError as exc:
            raise FleetRefused(check, f"a second If-None-Match: * PUT failed unexpectedly: {exc}") from None
        else:
            raise FleetRefused(
                check, "the store accepted a second PUT with If-None-Match: * (it ignores conditional writes)"
            )

        await _unchanged(bucket, name, etag, check)
        check = "conditional overwrite"
        try:
            await bucket.replace(name, b"overwritten", _WRONG_ETAG)
        except PreconditionFailed:
            passed.append(check)
        except BucketError as exc:
            raise FleetRefused(check, f"a PUT with a wrong If-Match failed unexpectedly: {exc}") from None
        else:
            raise FleetRefused(
                check, "the store accepted a PUT with a wrong If-Match (it ignores conditions)"
            )

        await _unchanged(bucket, name, etag, check)
        check = "conditional delete"
        try:
            await bucket.delete(name, if_match=_WRONG_ETAG)
        except PreconditionFailed as exc:
            if exc.status == 404:
                raise FleetRefused(
                    check, "the store deleted the object despite a wrong If-Match (it ignores conditions)"
                ) from None
            passed.append(check)
        except BucketError as exc:
            raise FleetRefused(check, f"a DELETE with a wrong If-Match failed unexpectedly: {exc}") from None
        else:
            if await bucket.head(name) is None:
                raise FleetRefused(
                    check, "the store deleted the object despite a wrong If-Match (it ignores conditions)"
                )
            raise FleetRefused(check, "the store answered a DELETE with a wrong If-Match with success")

        check = "range read"
        try:
            info, data = await bucket.get(name, start=2, end=7)
        except BucketError as exc:
            raise FleetRefused(check, f"a GET with Range: bytes=2-6 was not answered 206: {exc}") from None
        if data != _PAYLOAD[2:7] or info.size != len(_PAYLOAD):
            raise FleetRefused(check, "a GET with Range: bytes=2-6 returned other bytes")
        passed.append(check)
    finally:
        try:
            await bucket.delete(name)
        except BucketError:
            pass  # a scratch object of a few bytes; the janitor's listing does not count probe/
    return ProbeResult(tuple(passed))


async def _unchanged(bucket: Bucket, name: str, etag: str, check: str) -> None:
    """The probe object must still be the one we created: a refused write that wrote anyway is no refusal."""
    try:
        info = await bucket.head(name)
    except BucketError as exc:
        raise FleetRefused(check, f"cannot read the probe object back: {exc}") from None
    if info is None or info.etag != etag:
        raise FleetRefused(check, "the store answered 412 but changed the object anyway")
