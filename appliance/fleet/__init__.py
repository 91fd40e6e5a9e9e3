"""The fleet tier (issue 18): several replicas share one cache on S3-compatible object storage.

The bucket is the second tier (L2) under each replica's own disk cache (L1) and the source of truth;
its conditional writes are the only coordination between replicas (no extra service):

* ``bucket``: the S3 client (aiobotocore) in the fleet's terms, with conditional create/replace/delete;
* ``probe``: the start-up check that the store honours those conditions (else fleet mode is refused);
* ``leases``: who fills a digest (or refreshes a tag, or runs the janitor), by conditional PUTs;
* ``store``: ``S3BlobStore``, the bucket behind the cache's ``BlobStore`` interface;
* ``endpoint``: ``/_fleet/v1/fills/<digest>``, where other replicas follow a fill in progress;
* ``tier``: ``FleetTier``, the cache's ``SharedTier`` (disk, then bucket, then a lease; tag refreshes);
* ``tags``: tag records by ETag compare-and-swap, one refresher per tag across the fleet;
* ``reports``, ``janitor_plan`` and ``janitor``: access reports, and the lease-elected janitor that
  keeps the bucket under ``max_size`` and clears orphaned uploads and dead leases;
* ``inventory``: ``cache ls --fleet`` and ``cache verify --fleet`` on the bucket;
* ``counters`` and ``service``: what the fleet did, for ``Status.fleet`` and /metrics.

May import the shared vocabulary, ``config`` (``FleetConfig``), ``cache`` (the interfaces it
implements) and ``protocol`` (``FleetStatus``).  ``cache`` never imports ``fleet``: the engine
wires the tier in.
"""
