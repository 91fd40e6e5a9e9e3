"""Caching proxy appliance for container registries.

See docs/architecture.md for how the pieces fit together.  The engine (this package) never
imports the dashboard (``tui``); the two meet only at the control-socket protocol.

Its packages and root modules form layers; each may import only from the layers below it, so no
import cycle can form (tests/test_layering.py holds the table and checks every import):

* ``__main__`` and ``cli``: the command line;
* ``runner``: runs the engine and the control server in one process;
* ``control``: the control plane, acting on a running ``engine``;
* ``engine``: the composition root, building, starting, stopping and reloading what is below;
* ``front``: the proxy's front door (listeners, router, client identity, tunnels, mirror mode, CAs);
* ``registry``: the registry API it serves; ``metrics`` and ``accesslog`` render what it did;
* ``access``: client identities and access decisions (network floor, passwords, tokens, ACL rules),
  plain objects the front door and the registry layer call;
* ``fleet``: replicas sharing one S3-compatible bucket, a tier the engine puts under the cache (which
  never imports it);
* ``cache`` and ``upstream``: the stores and the upstream client, siblings that never import each other;
* ``config`` (on the basics only) and the shared vocabulary: ``oci`` (routes, media types), ``events``
  (request events and their bus), ``stats`` (counters over the events);
* the basics: ``errors``, ``digests``, ``tasks``, ``memory``, ``logsafe`` and this ``__init__``;
* ``protocol``: the control-socket wire schema, importing nothing of the engine (the dashboard's only
  way in), imported by ``control``, ``runner`` and ``cli``.
"""

__version__ = "0.1.0"
