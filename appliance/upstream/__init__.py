"""Talking to upstream registries: the client and its HTTP transport, bearer-token and Basic
challenges and the token cache, redirects and the policy on where they may lead, response checks,
failure bookkeeping, name resolution overrides and rate limits.  It may import `config` and the root
modules (errors) and `front.tunnel_policy` for address classes; never `registry`, `control` or `cli`.
"""
