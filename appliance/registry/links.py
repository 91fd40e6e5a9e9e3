"""Per-repository access to the shared cache: ask the upstream before serving an unlinked pair.

The cache stores each blob and manifest once per registry, but a repository is only served what
the upstream vouched for in that repository (``cache/links.py``, the ``links`` table).  For a pair
without a link, one ``HEAD`` in that repository decides: a ``200`` links it (the cached bytes are
then served, no second download), anything else is the client's answer, and an unreachable
upstream serves nothing that is not linked.  A pair confirmed (or fetched) with the client's own
upstream credential, passed through, is linked for that credential only: another client gets it
after its own check (issue 17.5).
"""

from __future__ import annotations

from appliance import oci
from appliance.cache import CacheIndex
from appliance.config.model import RegistryConfig
from appliance.errors import IntegrityError
from appliance.registry.gate import GatedUpstream
from appliance.registry.responses import answer_error


async def confirm_upstream(
    gate: GatedUpstream,
    index: CacheIndex,
    registry: RegistryConfig,
    repository: str,
    what: str,
    digest: str,
    client_authorization: str | None,
    credential: str = "",
) -> None:
    """``HEAD /v2/<repository>/<what>/<digest>`` upstream; links the pair on 200, raises otherwise.

    ``what`` is ``blobs`` or ``manifests``.  Raises the upstream's own answer (404, 401, 403, ...)
    as an ``UpstreamAnswer``, ``UpstreamError`` when it cannot be reached.  Returning at all means
    the upstream answered 200.  ``credential``: the keyed hash of ``client_authorization`` (when
    the client sent its own): the link then holds for that credential only.
    """
    headers = {"Accept": oci.FULL_ACCEPT} if what == "manifests" else None
    answer = await gate.request(
        registry,
        "HEAD",
        f"/v2/{repository}/{what}/{digest}",
        headers=headers,
        repository=repository,
        client_authorization=client_authorization,
    )
    if answer.status != 200:
        raise await answer_error(answer)
    announced = answer.headers.get("Docker-Content-Digest")
    await answer.release()
    if announced and announced != digest:
        raise IntegrityError(
            registry.host, f"upstream answered {what} {digest} with digest {announced}", status=answer.status
        )
    await index.add_links(registry.host, repository, [digest], credential)
