"""Checking an Authorization (or Proxy-Authorization) header, with a cache of verdicts.

A password check is slow by design (scrypt, ~50-100 ms) and a pull is a dozen CONNECTs, each with
the same header.  So ``Authenticator.check``:

* runs the password check in an executor, never on the event loop;
* remembers the verdict under a keyed hash of the header (HMAC with a key made at start-up, so the
  cache holds nothing a memory dump could replay or crack offline) for ``access.verdict_ttl``;
* joins concurrent checks of the same header to one (single flight);
* forgets every verdict at once when users, groups or tokens change (``update``);
* answers an unknown user exactly like a wrong password, and as slowly: an unknown user's password
  is checked against a dummy hash at the cost most of the users' hashes have (ready-made for the
  default cost, made once, off the loop, for another).

Robot tokens (``rat_...``, as the Basic password or a Bearer token) are checked by their digest,
which is fast, and their last use is remembered (since the engine started).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from appliance.access import tokens
from appliance.access.identities import Directory, Identity
from appliance.access.passwords import DummyHash, typical_cost, verify_password
from appliance.config.access import AccessConfig

MAX_HEADER = 4096
MAX_ENTRIES = 4096
# Password checks running at once: scrypt at the default cost holds 32 MiB while it runs, so a flood
# of distinct wrong passwords costs at most this many times that (the appliance aims at ~150 MB).
MAX_PARALLEL_CHECKS = 2


class Outcome(StrEnum):
    OK = "ok"
    MISSING = "no-credentials"
    MALFORMED = "malformed"
    REJECTED = "rejected"  # unknown user or wrong password: deliberately one outcome
    EXPIRED = "expired"


_MESSAGES = {
    Outcome.MISSING: "credentials required: put user:password in the proxy URL or log in",
    Outcome.MALFORMED: "malformed credentials: expected Basic base64(user:password) or Bearer rat_...",
    Outcome.REJECTED: "unknown user or wrong password",
    Outcome.EXPIRED: "robot token expired: create a new one (appliance token create)",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    identity: Identity | None = None
    token_id: str | None = None  # the token that authenticated, for last-used and expiry

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def message(self) -> str:
        """A one-line, actionable reason for the client (no secret, no user name)."""
        return "authenticated" if self.identity is not None else _MESSAGES[self.outcome]


@dataclass(frozen=True, slots=True)
class _Entry:
    verdict: Verdict
    until: float  # monotonic


@dataclass(frozen=True, slots=True)
class _Presented:
    """What a header carries; the secret leaves this module only into the check itself."""

    kind: str  # "basic" or "token"
    username: str
    secret: str

    def __repr__(self) -> str:
        return f"_Presented(kind={self.kind!r}, username={self.username!r}, secret='********')"


def parse_header(header: str) -> _Presented | None:
    """``Basic base64(user:password)`` or ``Bearer rat_...``; None when malformed."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and tokens.looks_like_token(value):
        return _Presented("token", "", value)
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep or not username or any(ord(c) < 32 for c in decoded):
        return None
    if tokens.looks_like_token(password):
        return _Presented("token", username, password)
    return _Presented("basic", username, password)


class Authenticator:
    """Turns credentials headers into verdicts for one ``[access]`` configuration at a time."""

    def __init__(
        self,
        access: AccessConfig,
        *,
        executor: concurrent.futures.Executor | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._executor = executor
        self._dummy = DummyHash(typical_cost([user.password_hash for user in access.users]))
        self._max_entries = max_entries
        self._clock = clock
        self._wall = wall_clock
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Verdict]] = {}  # checks in flight, by header
        self._generation = 0
        self._slots = asyncio.Semaphore(MAX_PARALLEL_CHECKS)
        self.directory = Directory(access)
        self.last_used: dict[str, float] = {}
        self.slow_checks = 0  # password hashes computed (cache misses that reached scrypt/bcrypt)
        self.cache_hits = 0

    @property
    def access(self) -> AccessConfig:
        return self.directory.access

    def update(self, access: AccessConfig) -> None:
        """A new configuration; cached verdicts go at once if who-is-who changed."""
        changed = access.credentials_key() != self.access.credentials_key()
        self.directory = Directory(access)
        if changed:
            self.forget()
            like = typical_cost([user.password_hash for user in access.users])
            if like is not None and DummyHash(like).like != self._dummy.like:
                self._dummy = DummyHash(like)

    def forget(self) -> None:
        self._cache.clear()
        # Checks in flight belong to the old users and tokens: callers arriving now start afresh.
        self._generation += 1
        self._pending.clear()

    def _cache_key(self, header: str) -> bytes:
        return hmac.new(self._key, header.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    async def identify(self, header: str | None, source: str) -> Verdict:
        """Who a request is from: the credentials it presents, else the identity its source address
        is mapped to (``access.clients``), else a MISSING verdict (the caller decides whether an
        anonymous client may go on).  Credentials that fail are never replaced by the address's
        identity: a wrong password is refused even from a mapped network."""
        if header is not None and header.strip():
            return await self.check(header)
        mapped = self.directory.for_address(source)
        if mapped is not None:
            return Verdict(Outcome.OK, mapped)
        return Verdict(Outcome.MISSING)

    async def check(self, header: str | None) -> Verdict:
        if header is None or not header.strip():
            return Verdict(Outcome.MISSING)
        if len(header) > MAX_HEADER:
            return Verdict(Outcome.MALFORMED)
        key = self._cache_key(header)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and entry.until > now:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return self._revalidated(entry.verdict)
        pending = self._pending.get(key)
        if pending is None:
            # The check runs in its own task: a client that goes away mid-check (a cancelled
            # CONNECT) neither wastes it nor fails the other requests waiting on the same header.
            pending = asyncio.ensure_future(self._check_and_store(header, key, self._generation))
            pending.add_done_callback(_retrieve)
            self._pending[key] = pending
        return self._revalidated(await asyncio.shield(pending))

    async def _check_and_store(self, header: str, key: bytes, generation: int) -> Verdict:
        try:
            verdict = await self._verify(header)
        finally:
            if self._pending.get(key) is asyncio.current_task():
                del self._pending[key]
        # Checks begun before users or tokens changed belong to the old ones: not remembered.
        if generation == self._generation:
            self._store(key, verdict)
        return verdict

    def _store(self, key: bytes, verdict: Verdict) -> None:
        self._cache[key] = _Entry(verdict, self._clock() + self.access.verdict_ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def _revalidated(self, verdict: Verdict) -> Verdict:
        """A remembered verdict, with a token's expiry and last use checked at every use."""
        if verdict.token_id is None:
            return verdict
        token = self.directory.token(verdict.token_id)
        now = self._wall()
        if token is None:
            return Verdict(Outcome.REJECTED)
        if token.expired(now):
            return Verdict(Outcome.EXPIRED)
        self.last_used[token.token_id] = now
        return verdict

    async def _verify(self, header: str) -> Verdict:
        presented = parse_header(header)
        if presented is None:
            return Verdict(Outcome.MALFORMED)
        if presented.kind == "token":
            token_id = tokens.token_id_of(presented.secret)
            token = self.directory.token(token_id) if token_id else None
            if not tokens.matches(presented.secret, token.digest if token else None) or token is None:
                return Verdict(Outcome.REJECTED)
            return Verdict(Outcome.OK, self.directory.for_token(token), token.token_id)
        user = self.directory.user(presented.username)
        loop = asyncio.get_running_loop()
        async with self._slots:
            if user is None:
                dummy = self._dummy
                stored = (
                    dummy.value() if dummy.ready else await loop.run_in_executor(self._executor, dummy.value)
                )
            else:
                stored = user.password_hash
            self.slow_checks += 1
            good = await loop.run_in_executor(self._executor, verify_password, presented.secret, stored)
        if user is None or not good:
            return Verdict(Outcome.REJECTED)
        return Verdict(Outcome.OK, self.directory.for_user(user))


def _retrieve(task: asyncio.Future[Verdict]) -> None:
    # Every caller may have gone: the exception (if any) is then nobody's, and not worth a warning.
    if not task.cancelled():
        task.exception()
