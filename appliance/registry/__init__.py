"""The registry API the appliance serves: routing of `/v2/` requests, blob and manifest
handlers, the gate that decides when the upstream must be asked, tag lists and their pages, link
bookkeeping, pull-ahead, health, and the OCI/reference parsing and response helpers they share.  It may
import `upstream`, `cache`, `config` and the root modules (errors, events, digests, tasks); never `front`,
`control` or `cli`.  (`events` and `cache.links` import `registry.oci` for its route types.)
"""
