"""Who a client is, on the proxy port and on the mirror endpoint (issue 17, items 2 and 3).

With client authentication on (``[access] enabled``), every CONNECT, absolute-form request and
mirror request is tied to an identity before anything else happens:

* **Proxy port** (``CONNECT``, ``http://`` absolute-form): ``Proxy-Authorization: Basic`` (a user's
  password, or a robot token as the password), else a client certificate from the TLS listener,
  else the source network's identity (``access.clients``).  Anything else is ``407`` with a reason
  phrase that says what to do: Go clients (skopeo, podman, containerd, Docker) never retry a 407 and
  show only that phrase.  The identity is bound to the tunnel; every request decrypted inside it
  carries it.
* **Mirror endpoint** (``/v2/...``): ``Authorization: Basic`` (password or robot token),
  ``Bearer rat_...`` (a robot token), ``Bearer apt....`` (a token from ``/auth/token``, scoped to
  repositories), else a client certificate, else the source network's identity.  Anything else is
  ``401`` with a ``Bearer`` challenge whose realm is the appliance's own ``/auth/token``.

Refusals are logged under ``appliance.identity`` with the outcome only: never a header, a password,
a token or a user name that failed (a mistyped password pasted as a user name is still a secret).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from appliance.access import bearer
from appliance.access.bearer import BearerTokens, Granted, Issued, Scope
from appliance.access.identities import Identity, IdentityKind
from appliance.access.verdicts import Authenticator, Outcome, Verdict
from appliance.config.model import Config

log = logging.getLogger("appliance.identity")

REALM = "registry-appliance"
SERVICE = "registry-appliance"
TOKEN_PATH = "/auth/token"
PROXY_AUTH_REASON = "Proxy Authentication Required"


class AuthenticationRequired(Exception):
    """The client must (re)authenticate: ``status`` (401 or 407), a reason, and the challenge headers."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers)


def proxy_reason(outcome: Outcome, proxy_url: str) -> str:
    """The 407 reason phrase: Go clients print exactly this, so it says what to change."""
    hint = f"set HTTPS_PROXY={proxy_url}"
    detail = {
        Outcome.MISSING: f"{hint} (credentials in the proxy URL)",
        Outcome.REJECTED: f"unknown user or wrong password; {hint}",
        Outcome.MALFORMED: f"malformed Proxy-Authorization (expected Basic); {hint}",
        Outcome.EXPIRED: "robot token expired: create a new one (appliance token create)",
    }.get(outcome, hint)
    return f"{PROXY_AUTH_REASON}: {detail}"


def proxy_url(scheme: str, address: str) -> str:
    return f"{scheme}://USER:PASSWORD@{address}"


def parse_connect_headers(head: bytes) -> dict[str, list[str]]:
    """The header lines of a CONNECT head (after its request line), by lower-case name."""
    headers: dict[str, list[str]] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().decode("latin-1").lower()
        headers.setdefault(key, []).append(value.strip().decode("latin-1"))
    return headers


def single(values: list[str] | None) -> str | None:
    """A header that must appear at most once: None when absent, "" (malformed) when repeated."""
    if not values:
        return None
    return values[0] if len(values) == 1 else "\x00repeated"


@dataclass
class ClientIdentification:
    """Turns what a client presents into an identity, or an ``AuthenticationRequired``."""

    config: Callable[[], Config]
    authenticator: Authenticator
    tokens: BearerTokens = field(default_factory=BearerTokens)
    refused: int = 0  # 401/407 answers given (a counter for tests and metrics)

    @property
    def enabled(self) -> bool:
        return self.config().access.enabled

    # -- the proxy port --------------------------------------------------------------------------

    async def proxy(
        self, header: str | None, source: str, bound: Identity | None, url: str, what: str
    ) -> Identity | None:
        """The identity of a CONNECT or absolute-form request (None when authentication is off).

        ``bound``: the identity of the connection's client certificate, if any; ``url`` the proxy
        URL to suggest (``http://USER:PASSWORD@host:port``); ``what`` names the request in the log.
        """
        if not self.enabled:
            return None
        if header is None and bound is not None:
            return bound
        verdict = await self.authenticator.identify(header, source)
        if verdict.ok and verdict.identity is not None:
            return verdict.identity
        self._refused(verdict, source, what, 407)
        raise AuthenticationRequired(
            407, proxy_reason(verdict.outcome, url), {"Proxy-Authenticate": f'Basic realm="{REALM}"'}
        )

    # -- the mirror endpoint ---------------------------------------------------------------------

    async def mirror(
        self,
        header: str | None,
        source: str,
        bound: Identity | None,
        repository: str | None,
        base_url: str,
        what: str,
    ) -> Identity | None:
        """The identity of a mirror request for ``repository`` (as the client names it)."""
        if not self.enabled:
            return None
        challenge = self.challenge(base_url, repository)
        if header is not None and header.strip():
            scheme, _, value = header.strip().partition(" ")
            value = value.strip()
            if scheme.lower() == "bearer" and bearer.looks_like_ours(value):
                granted = self.tokens.verify(value, self.authenticator.directory)
                if granted is not None and granted.covers(repository):
                    return granted.identity
                reason = (
                    "token expired or not for this repository"
                    if granted is None
                    else "token not for this repository"
                )
                self._log_refusal(source, what, 401, reason)
                raise AuthenticationRequired(401, reason, challenge)
            verdict = await self.authenticator.check(header)
        elif bound is not None:
            return bound
        else:
            verdict = await self.authenticator.identify(None, source)
        if verdict.ok and verdict.identity is not None:
            return verdict.identity
        self._refused(verdict, source, what, 401)
        raise AuthenticationRequired(401, _mirror_reason(verdict.outcome), challenge)

    def challenge(self, base_url: str, repository: str | None) -> dict[str, str]:
        scope = f',scope="repository:{repository}:pull"' if repository else ""
        return {"WWW-Authenticate": f'Bearer realm="{base_url}{TOKEN_PATH}",service="{SERVICE}"{scope}'}

    async def issue_token(
        self, header: str | None, source: str, bound: Identity | None, scopes: tuple[Scope, ...], service: str
    ) -> tuple[Identity, Issued]:
        """``/auth/token``: Basic credentials (or the certificate's, or the network's identity)."""
        if header is not None and header.strip():
            verdict = await self.authenticator.check(header)
        elif bound is not None:
            verdict = Verdict(Outcome.OK, bound)
        else:
            verdict = await self.authenticator.identify(None, source)
        if not verdict.ok or verdict.identity is None:
            self._refused(verdict, source, "token request", 401)
            raise AuthenticationRequired(
                401, _mirror_reason(verdict.outcome), {"WWW-Authenticate": f'Basic realm="{REALM}"'}
            )
        issued = self.tokens.issue(verdict.identity, scopes, service or SERVICE)
        log.info(
            "%s: token for %s (%s) scoped to %s",
            source,
            verdict.identity.name,
            verdict.identity.via,
            ", ".join(scope.text() for scope in scopes) or "no repository",
        )
        return verdict.identity, issued

    def certificate_identity(self, name: str | None) -> Identity | None:
        """The identity a verified client certificate names (its kind from the directory); None
        with client authentication off, where no request carries an identity."""
        if name is None or not self.enabled:
            return None
        directory = self.authenticator.directory
        kind = IdentityKind.USER if directory.user(name) is not None else IdentityKind.ROBOT
        return directory.identity(name, kind, "cert")

    def granted(self, token: str) -> Granted | None:
        return self.tokens.verify(token, self.authenticator.directory)

    # -- logging ---------------------------------------------------------------------------------

    def _refused(self, verdict: Verdict, source: str, what: str, status: int) -> None:
        self._log_refusal(source, what, status, str(verdict.outcome))

    def _log_refusal(self, source: str, what: str, status: int, reason: str) -> None:
        self.refused += 1
        log.info("%s: %s refused with %d: %s", source, what, status, reason)


def _mirror_reason(outcome: Outcome) -> str:
    return {
        Outcome.MISSING: "authentication required: log in to the appliance (docker login HOST) "
        "or present a client certificate",
        Outcome.REJECTED: "unknown user or wrong password",
        Outcome.MALFORMED: "malformed Authorization: expected Basic, or Bearer with a token",
        Outcome.EXPIRED: "robot token expired: create a new one (appliance token create)",
    }.get(outcome, "authentication required")
