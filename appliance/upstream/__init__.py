"""Talking to upstream registries: the client and its HTTP transport, bearer-token and Basic challenges and
the token cache, redirects and the policy on where they may lead, response checks, failure bookkeeping,
name resolution overrides and rate limits, and the address classes the redirect policy and the front's
tunnel policy share.  It may import `config` and the root vocabulary (`oci`, `events`, `stats`) and
basics (`errors`, `digests`, `tasks`, `memory`, `logsafe`); never `cache` (a sibling), `registry`,
`front` or anything above them.
"""
