"""What a manifest vouches for: the digests a repository may be served once its manifest came from it.

A registry that serves a manifest in a repository serves everything that manifest lists in that
repository too (distribution refuses a manifest ``PUT`` whose blobs the repository lacks).  So a
manifest that came from repository R upstream links R to its config and layers (an image manifest)
or to its child manifests (an index, whose children, fetched by digest in R, link their own blobs).
"""

from __future__ import annotations

import json

from appliance import oci

_IMAGE = (oci.OCI_MANIFEST, oci.DOCKER_MANIFEST_V2)
_INDEX = (oci.OCI_INDEX, oci.DOCKER_MANIFEST_LIST)
_SCHEMA1 = (oci.DOCKER_MANIFEST_V1_SIGNED, "application/vnd.docker.distribution.manifest.v1+json")


def referenced_digests(body: bytes, media_type: str) -> tuple[str, ...]:
    """The digests ``body`` lists (blobs of an image, children of an index); () if unreadable."""
    if media_type not in (*_IMAGE, *_INDEX, *_SCHEMA1):
        return ()
    try:
        document = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(document, dict):
        return ()
    descriptors: list[object] = []
    key = "digest"
    if media_type in _IMAGE:
        layers = document.get("layers")
        descriptors = [document.get("config"), *(layers if isinstance(layers, list) else ())]
    elif media_type in _INDEX:
        children = document.get("manifests")
        descriptors = list(children) if isinstance(children, list) else []
    else:
        layers = document.get("fsLayers")
        descriptors, key = (list(layers) if isinstance(layers, list) else []), "blobSum"
    found: dict[str, None] = {}
    for descriptor in descriptors:
        if isinstance(descriptor, dict):
            digest = descriptor.get(key)
            if isinstance(digest, str) and ":" in digest:
                found[digest] = None
    return tuple(found)
