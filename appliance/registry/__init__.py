"""The registry API the appliance serves: routing of `/v2/` requests, blob and manifest handlers, the gate
that decides when the upstream must be asked, tag lists and their pages, link bookkeeping, pull-ahead,
health, client input and reference parsing, the response helpers they share, the tag policy (when a
tag is revalidated or served stale), the access decision taken before any of it (`authorize`: ACL
and rate limits) and the outcomes every service returns, which become events.  It may import
`upstream`, `cache`, `config`, `access` (identities, rules, limits) and the root vocabulary (`oci`,
`events`, `stats`) and basics (`errors`, `digests`, `tasks`, `memory`, `logsafe`); never `front`,
`engine`, `control` or `cli`.
"""
