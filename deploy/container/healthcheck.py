#!/usr/bin/env python3
"""Container HEALTHCHECK: ``GET /`` on the port the engine listens on (``$LISTEN``, else 3128).

No curl in the image; Python is already there.  Proxy variables are ignored on purpose: a user may
set HTTPS_PROXY for something else, and the check must reach the engine directly.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORT = 3128


def target(listen: str) -> str:
    """The URL to probe for a ``LISTEN`` value (``host:port``, ``:port``, ``[v6]:port`` or ``port``)."""
    text = listen.strip()
    host, port = "", str(DEFAULT_PORT)
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        port = rest[1:] or port
    elif text.isdigit():
        port = text
    elif ":" in text:
        host, _, port = text.rpartition(":")
        port = port or str(DEFAULT_PORT)
    else:
        host = text
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def main() -> int:
    url = target(os.environ.get("LISTEN", ""))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as answer:
            ok = answer.status == 200
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
