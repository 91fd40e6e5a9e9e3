"""Who is asking and how they arrived: one immutable record per request, built by the front door.

The router (``front/router.py``) builds a ``RequestContext`` once per registry request, after it
has resolved which configured registry the request is for, and hands it to the registry layer
(``RegistryProxy.handle`` / ``relay_token``), which reads the registry and the client from it
instead of re-resolving host strings.  It lives here, not in ``front/``, because the registry
layer consumes it and must not import the front door.

Client identity (issue 17) hangs off ``identity``: the front door binds an identity to a
connection (``Proxy-Authorization`` on the CONNECT, a client certificate, or a source-address
mapping) or finds it per mirror request (``Authorization``), the router copies it into every
request's context (after checking that a tunnelled request is for the tunnel's ``authority``), and
the registry layer can check per-identity rules against the resolved ``registry`` and the route.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from appliance.access.identities import Identity
from appliance.config.model import RegistryConfig


class Mode(StrEnum):
    """How a request reached the appliance."""

    TUNNEL = "tunnel"  # inside an intercepted CONNECT, TLS terminated with our leaf (MITM mode)
    MIRROR = "mirror"  # /v2/<registry>/... on the listen port (mirror mode)
    FORWARD = "forward"  # an absolute http:// URI to a configured plain-HTTP registry


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """The client's end of the connection; ``str()`` is the form logs and events carry."""

    host: str  # "" when the socket had no address (then shown as "-")
    port: int | None = None

    @classmethod
    def from_peer(cls, peer: object) -> ClientAddress:
        """From a socket's ``peername`` (``(host, port, ...)`` for IP sockets, else unknown)."""
        if isinstance(peer, tuple) and len(peer) >= 2:
            return cls(str(peer[0]), int(peer[1]))
        return cls("")

    def __str__(self) -> str:
        if not self.host:
            return "-"
        if self.port is None:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Authority:
    """A CONNECT target, ``host:port`` as the client asked for it (host lower-case, no final dot)."""

    host: str
    port: int = 443

    def __str__(self) -> str:
        # The name registries are configured and looked up by: the port only when it is not 443.
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


class ClientIdentity(Protocol):
    """What the registry layer needs of an identity (``access.identities.Identity`` has it)."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One request's facts that do not depend on its path: who, how, through which tunnel, for what."""

    client: ClientAddress
    mode: Mode
    # The registry this request is served for, resolved once against the config of the moment.  For
    # a request to a token realm host inside a tunnel it is that realm's own (default) settings.
    registry: RegistryConfig
    authority: Authority | None = None  # the CONNECT target, for Mode.TUNNEL only
    # Who the request is on behalf of (front/identity.py): a user, a robot, a client certificate's
    # or a source network's identity, with its groups.  None: client authentication is off.
    identity: Identity | None = None
