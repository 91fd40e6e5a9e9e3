"""ACL evaluation: ordered rules, the first that matches decides; no match means deny.

A rule matches a request when its ``who`` names the identity (its name, ``@`` one of its groups, or
``*``), its ``registry`` is the request's registry (or ``*``), its repository glob matches the
repository, and its actions include the request's.  ``evaluate`` is a pure function over the rules;
``AccessPolicy`` adds what the configuration knows: whether access control is on (off: everything is
allowed, as the seed did) and which registry an alias in a rule names.

Deny by default: with access control on, a request that no rule allows is refused, so adding a user
grants nothing until a rule says so, and a typo in a rule fails closed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from appliance.access.identities import Directory, Identity, identity_named
from appliance.config.access import ANYONE, AclRule, Action, Effect
from appliance.config.model import Config, normalize_host


@dataclass(frozen=True, slots=True)
class AclRequest:
    identity: Identity
    registry: str  # the registry's host as configured; the CONNECT host for ``tunnel``
    repository: str  # "" for tunnel and admin
    action: Action


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: int | None  # index of the deciding rule in the ACL; None: no rule matched (or ACL off)
    reason: str  # for audit records and error messages: which rule, or why none

    def __bool__(self) -> bool:
        return self.allowed


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")  # "library/**" covers "library" and everything under it
            i += 3
        elif pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def glob_matches(pattern: str, repository: str) -> bool:
    """``*`` matches within one path segment, ``**`` across any number of them."""
    return _glob(pattern).fullmatch(repository) is not None


def who_matches(who: str, identity: Identity) -> bool:
    if who == ANYONE:
        return True
    if who.startswith("@"):
        return who[1:] in identity.groups
    return who == identity.name


def rule_matches(rule: AclRule, request: AclRequest) -> bool:
    return (
        request.action in rule.actions
        and who_matches(rule.who, request.identity)
        and (rule.registry == ANYONE or rule.registry == normalize_host(request.registry))
        and glob_matches(rule.repository, request.repository)
    )


def evaluate(rules: Sequence[AclRule], request: AclRequest) -> Decision:
    """The first rule matching ``request`` decides; none matching is a denial."""
    for index, rule in enumerate(rules):
        if rule_matches(rule, request):
            allowed = rule.effect is Effect.ALLOW
            return Decision(allowed, index, f"access.acl[{index}] ({rule.effect} {rule.who})")
    return Decision(False, None, "no access rule allows it")


def canonical_rules(
    rules: Sequence[AclRule], registry_for: Callable[[str], str | None]
) -> tuple[AclRule, ...]:
    """Rules with each registry alias (``docker.io``) replaced by the registry's own host."""
    out = []
    for rule in rules:
        host = registry_for(rule.registry) if rule.registry != ANYONE else None
        out.append(replace(rule, registry=normalize_host(host)) if host else rule)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The ACL of one configuration, ready to decide."""

    enabled: bool
    rules: tuple[AclRule, ...]

    @classmethod
    def from_config(cls, config: Config) -> AccessPolicy:
        def registry_for(name: str) -> str | None:
            registry = config.registry_for(name)
            return registry.host if registry is not None else None

        return cls(config.access.enabled, canonical_rules(config.access.acl, registry_for))

    def decide(self, identity: Identity, registry: str, repository: str, action: Action) -> Decision:
        if not self.enabled:
            return Decision(True, None, "access control is off")
        return evaluate(self.rules, AclRequest(identity, registry, repository, action))


def check_named(
    config: Config, name: str, registry: str, repository: str, action: Action
) -> tuple[Identity, Decision]:
    """What the ACL decides for the identity called ``name`` (``appliance acl check``).

    Unlike the request path, this says what the rules decide even with access control off.
    """
    identity = identity_named(Directory(config.access), name)
    known = config.registry_for(registry)
    host = known.host if known is not None else registry
    policy = AccessPolicy.from_config(config)
    return identity, evaluate(policy.rules, AclRequest(identity, host, repository.strip("/"), action))
