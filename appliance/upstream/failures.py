"""How a failed upstream exchange is described: one line per error type, and no secret in it."""

from __future__ import annotations

import aiohttp
from yarl import URL

from appliance.config.model import Config
from appliance.upstream import challenges as auth


def describe_failure(exc: BaseException, host: str) -> str:
    """One line saying what went wrong talking to ``host``; built from the error type, not headers."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None)
        return f"certificate verify failed for {host}: {reason or cert_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake with {host} failed: {getattr(exc.os_error, 'reason', None) or exc.os_error}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the outbound proxy {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the outbound proxy refused the tunnel to {host}: HTTP {exc.status} {exc.message}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"timed out connecting to {host}"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"timed out waiting for {host} to send data"
    if isinstance(exc, TimeoutError):
        return f"timed out talking to {host}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{host} closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response body from {host} was cut off"
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's parser errors span lines (the bytes, a caret): one line, as the log needs.
        return f"bad HTTP response from {host}: {' '.join(str(exc.message).split())}"
    if isinstance(exc, OSError):
        return f"connection to {host} failed: {_os_reason(exc)}"
    return f"request to {host} failed: {type(exc).__name__}"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def collect_secrets(config: Config) -> tuple[str, ...]:
    """The configured secrets as they could appear in a message, longest first."""
    secrets = [c.password.reveal() for c in config.credentials]
    secrets += [auth.basic_authorization(c).split(" ", 1)[1] for c in config.credentials]
    if config.upstream_proxy:
        password = URL(config.upstream_proxy).password
        if password:
            secrets.append(password)
    return tuple(sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Belt and braces: no configured secret survives into a message."""
    for secret in secrets:
        text = text.replace(secret, "********")
    return text
