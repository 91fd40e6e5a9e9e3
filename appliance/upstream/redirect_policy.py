"""Where an upstream redirect may send the engine: the tunnel address policy, applied to redirect hops.

The engine follows redirects itself and hands the body to the client, so a registry (or anyone who
can make one answer a redirect) could otherwise make the appliance fetch from loopback, a private
service or a cloud metadata endpoint and read the answer back (SSRF).  A hop is allowed when:

* its host is *exempt*: a configured registry (host, alias or token realm), a ``--resolve`` name, or
  an entry of the tunnel allow-list (``tunnel = [...]``).  These are the operator's own statements
  of where registries live, so loopback and private addresses are fine for them; or
* every address its name resolves to passes the address classes of the tunnel mode
  (``tunnel_policy``): loopback only under ``tunnel = "all"`` (and never the appliance's own ports),
  link-local and cloud metadata never.  Redirects are not tunnels, so the mode's port and host
  rules do not apply (a CDN is on no allow-list), only its address classes.

The addresses are checked where the connection is made: redirect hops to non-exempt hosts use a
connection pool whose resolver runs ``check`` on every answer (``upstream.transport``), and aiohttp
dials exactly what the resolver returned, so a name cannot be re-pointed between check and connect
(DNS rebinding).  An IP literal never reaches a resolver and is checked before the request.

A hop from ``https`` down to ``http`` is refused unless the registry itself is plain HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from yarl import URL

from appliance.config.model import Config, RegistryConfig, Scheme, TunnelMode, TunnelPolicy, split_host_port
from appliance.upstream.addresses import AddressClass, classify_address, list_matches, parse_address

_ALLOWED: dict[bool, frozenset[AddressClass]] = {
    False: frozenset({AddressClass.PUBLIC, AddressClass.PRIVATE}),
    True: frozenset({AddressClass.PUBLIC, AddressClass.PRIVATE, AddressClass.LOOPBACK}),
}


class RedirectRefused(OSError):
    """A redirect hop the policy refuses; an ``OSError`` so it can leave an aiohttp resolver."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RedirectPolicy:
    """The facts a redirect decision needs, taken once from a Config (rebuilt on reload)."""

    tunnel: TunnelPolicy = field(default_factory=TunnelPolicy)
    exempt_hosts: frozenset[str] = frozenset()
    own_addresses: frozenset[str] = frozenset()
    own_ports: frozenset[int] = frozenset()

    @classmethod
    def from_config(
        cls, config: Config, own_addresses: Iterable[str] = (), own_ports: Iterable[int] = ()
    ) -> RedirectPolicy:
        names: set[str] = set()
        for registry in config.registries:
            for value in (*registry.names(), *registry.auth_hosts):
                names.add(_bare(value))
        names.update(_bare(override.host) for override in config.resolve)
        return cls(config.tunnel, frozenset(names), frozenset(own_addresses), frozenset(own_ports))

    def exempt(self, host: str, port: int) -> bool:
        """Whether the operator named ``host`` (a registry, a ``--resolve`` name, an allow entry)."""
        name = _bare(host)
        if name in self.exempt_hosts:
            return True
        return self.tunnel.mode is TunnelMode.LIST and list_matches(self.tunnel.hosts, name, port)

    def check_addresses(self, host: str, port: int, addresses: Collection[str]) -> None:
        """Raise ``RedirectRefused`` unless every address of ``host`` may be reached by a redirect."""
        allowed = _ALLOWED[self.tunnel.mode is TunnelMode.ALL]
        if not addresses:
            raise RedirectRefused(f"redirect to {host} refused: it has no addresses")
        for text in addresses:
            address = parse_address(text)
            if address is None:
                raise RedirectRefused(f"redirect to {host} refused: {text!r} is not an IP address")
            klass = classify_address(address, self.own_addresses)
            if klass not in allowed:
                shown = host if str(address) == _bare(host) else f"{host} ({address})"
                raise RedirectRefused(f"redirect to {shown} refused: {klass.value} address")
            if klass is AddressClass.LOOPBACK and port in self.own_ports:
                raise RedirectRefused(f"redirect to {host}:{port} refused: that is the appliance itself")

    def check_hop(self, registry: RegistryConfig, source: URL, target: URL) -> bool:
        """Check what can be checked before connecting; True when the hop needs the guarded pool.

        Raises ``RedirectRefused`` for an https -> http downgrade (unless the registry is plain
        HTTP) and for an IP literal the address policy refuses.
        """
        host = target.host or ""
        port = target.port or (443 if target.scheme == "https" else 80)
        if source.scheme == "https" and target.scheme == "http" and registry.scheme is not Scheme.HTTP:
            raise RedirectRefused(f"redirect from https://{source.host} down to http://{host} refused")
        if self.exempt(host, port):
            return False
        if parse_address(host) is not None:
            self.check_addresses(host, port, (host,))
        return True


def _bare(host: str) -> str:
    """``host``, ``host:port`` or ``[v6]:port`` -> the lower-case host, no port, brackets or dot."""
    value = host.strip().lower().rstrip(".")
    try:
        name = split_host_port(value)[0]
    except ValueError:
        name = value
    address = parse_address(name)
    return str(address) if address is not None else name.rstrip(".")
