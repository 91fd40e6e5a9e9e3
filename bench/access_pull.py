"""Access control's cost on the request path: a warm 12-layer pull with identity, ACL and rate limits
on vs the same pull with access control off.

``auth_pull`` weighs proving who a client is (a password per CONNECT, behind the verdict cache);
this one weighs what is decided for every registry request after that: the route's action, a
first-match walk over an ACL shaped like a real one (a dozen rules for other identities, groups and
repositories before the one that allows the pull, and an explicit deny that does not match), and the
identity's request bucket (a rate the pull never reaches, so it is charged but never refused).  No
byte rate is set: pacing slows a client on purpose and would measure the limit, not the check.

Two appliances in front of the same upstream, both primed by one pull; then the runs alternate
between them and the medians are compared.  Goal: <= 1.05x.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from appliance.access.passwords import hash_password
from bench.harness import Context, Metric, Target, interleave, median
from bench.peers import appliance_for, settle
from bench.pulls import timed_pull

NAME = "access_pull"
USER = "ci-runner"


def access_table(password: str, registry: str) -> dict[str, Any]:
    """``[access]`` with the pulling identity's rule after a dozen that do not match it."""
    others = [
        {"who": f"@team-{n}", "actions": ["pull", "push"], "registry": registry, "repository": f"team-{n}/**"}
        for n in range(10)
    ]
    return {
        "enabled": True,
        "requests_per_minute": 100_000,
        "users": [{"name": USER, "password_hash": hash_password(password)}],
        "groups": [{"name": f"team-{n}", "members": [f"dev-{n}"]} for n in range(10)]
        + [{"name": "runners", "members": [USER]}],
        "acl": [
            *others,
            {
                "who": "@runners",
                "actions": ["pull"],
                "registry": registry,
                "repository": "secret/**",
                "effect": "deny",
            },
            {"who": "@runners", "actions": ["pull"], "registry": registry, "repository": "**"},
        ],
        "limits": [{"who": "@runners", "requests_per_minute": 50_000}],
    }


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    password = secrets.token_urlsafe(16)
    open_door = appliance_for(scratch / "access-off", lab.pki, upstream)
    guarded = appliance_for(scratch / "access-on", lab.pki, upstream)
    guarded.extra_toml = {"access": access_table(password, upstream.name_port)}
    guarded.write_config()
    open_door.start()
    guarded.start()
    try:
        image = lab.image("small", ctx.profile.small_layers)
        reference = image.reference(upstream.name_port)
        proxy = f"http://{USER}:{password}@127.0.0.1:{guarded.port}"
        pulls: dict[str, Callable[[], float]] = {
            "access off": lambda: timed_pull(
                reference, scratch, cert_dir=open_door.cert_dir(), https_proxy=open_door.url
            ),
            "access on": lambda: timed_pull(
                reference, scratch, cert_dir=guarded.cert_dir(), https_proxy=proxy
            ),
        }
        for pull in pulls.values():
            pull()  # both caches warm: what is left to compare is the decision per request
        settle()
        times = interleave(pulls, ctx.profile.runs)
        med = {peer: median(values) for peer, values in times.items()}
        ratio = med["access on"] / med["access off"]
        ctx.log("  warm pull, ACL + limits: " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items()))
        ctx.log(f"  access on / access off: {ratio:.3f}x")
        return [
            Metric(
                NAME,
                f"{len(ctx.profile.small_layers)}-layer warm pull: ACL + limits on / access off",
                ratio,
                "x",
                Target("<=", 1.05, "<= 1.05x"),
                {"layers": len(ctx.profile.small_layers), "rules": 12, "seconds": times, "median": med},
            )
        ]
    finally:
        guarded.stop()
        open_door.stop()
