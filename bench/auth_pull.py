"""Client authentication's cost: a warm pull of the 12-layer image with auth on vs the same pull off.

Two appliances in front of the same upstream, one with ``[access] enabled`` (alice, a password at the
default scrypt cost, in the proxy URL: ``HTTPS_PROXY=http://alice:...@``) and one without.  Both are
primed by one pull; then every run pulls through each, in rotating order, and the medians are
compared.  A pull is a dozen CONNECTs with the same ``Proxy-Authorization``: the verdict cache
should leave one password check per pull at most, so the goal is <= 1.05x.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from appliance.access.passwords import hash_password
from bench.harness import Context, Metric, Target, interleave, median
from bench.peers import appliance_for, settle
from bench.pulls import timed_pull

NAME = "auth_pull"


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    password = secrets.token_urlsafe(16)
    plain = appliance_for(scratch / "auth-off", lab.pki, upstream)
    secured = appliance_for(scratch / "auth-on", lab.pki, upstream)
    secured.extra_toml = {
        "access": {
            "enabled": True,
            "users": [{"name": "alice", "password_hash": hash_password(password)}],
            # Deny by default: one rule lets alice pull (bench/access_pull.py weighs a real rule set).
            "acl": [{"who": "alice", "actions": ["pull"]}],
        }
    }
    secured.write_config()
    plain.start()
    secured.start()
    try:
        image = lab.image("small", ctx.profile.small_layers)
        reference = image.reference(upstream.name_port)
        plain_trust, secured_trust = plain.cert_dir(), secured.cert_dir()
        secured_proxy = f"http://alice:{password}@127.0.0.1:{secured.port}"
        pulls: dict[str, Callable[[], float]] = {
            "auth off": lambda: timed_pull(reference, scratch, cert_dir=plain_trust, https_proxy=plain.url),
            "auth on": lambda: timed_pull(
                reference, scratch, cert_dir=secured_trust, https_proxy=secured_proxy
            ),
        }
        for pull in pulls.values():
            pull()  # prime the cache (and, for auth on, nothing: the verdict cache starts cold each run)
        settle()
        times = interleave(pulls, ctx.profile.runs)
        med = {peer: median(values) for peer, values in times.items()}
        ctx.log("  warm 12-layer pull: " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items()))
        return [
            Metric(
                NAME,
                f"{len(ctx.profile.small_layers)}-layer warm pull: auth on / auth off",
                med["auth on"] / med["auth off"],
                "x",
                Target("<=", 1.05, "<= 1.05x"),
                {"layers": len(ctx.profile.small_layers), "seconds": times, "median": med},
            )
        ]
    finally:
        secured.stop()
        plain.stop()
