"""Client identity and access decisions: who is on a connection, and what it may do.

Owns the network floor (which source addresses may connect at all), password hashes (scrypt, and
bcrypt from htpasswd files users bring), robot tokens, the identities built from the ``[access]``
configuration (users, groups, tokens, source-CIDR mappings), the verdict cache in front of the slow
password check, and ACL evaluation (ordered first-match rules, default deny).

Per-identity rate limits (``limits``: token buckets for requests and bytes) live here too.

Everything here is plain functions and small objects without sockets: the front door and the request
path call in with what they read off the wire.  It may import ``config``, ``protocol`` (the shared
input checks of ``protocol.access_input``) and the root vocabulary and basics; nothing of the front
door, the registry layer or the control plane.
"""
