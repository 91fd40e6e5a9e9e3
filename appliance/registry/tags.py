"""``/v2/<name>/tags/list`` as the appliance serves it: the upstream's list, paginated as asked.

The client's ``n`` and ``last`` go upstream, and are applied again to the answer (see
``tag_pages``): an upstream that ignored them still gives the client the page it asked for, and
the ``Link`` to the next page names the path the client used (a mirror's registry prefix kept).
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from appliance.config.model import RegistryConfig
from appliance.errors import UpstreamError
from appliance.events import CacheStatus
from appliance.oci import API_VERSION_HEADER
from appliance.registry import tag_pages
from appliance.registry.gate import GatedUpstream
from appliance.registry.outcome import Call, Reply, Served
from appliance.registry.responses import answer_error

# A tag list is read whole to sort and cut it: Docker Hub's biggest repositories list ~10k tags.
MAX_TAG_LIST_BYTES = 8 * 1024 * 1024


class TagListService:
    """Serves ``tags/list`` GETs; a HEAD is relayed as it is."""

    __slots__ = ("_gate",)

    def __init__(self, gate: GatedUpstream) -> None:
        self._gate = gate

    async def serve(self, request: web.BaseRequest, registry: RegistryConfig, call: Call) -> Reply:
        query = tuple(request.rel_url.query.items())
        asked = tag_pages.page_request(query)
        if request.method == "HEAD":
            return await self._gate.relay(request, registry, call)
        answer = await self._gate.request(
            registry,
            "GET",
            call.path_qs,
            headers={"Accept": "application/json"},
            repository=call.route.repository,
            client_authorization=call.authorization,
        )
        if answer.status != 200:
            raise await answer_error(answer)
        try:
            body = await answer.read(MAX_TAG_LIST_BYTES)
        finally:
            await answer.release()
        try:
            name, tags = tag_pages.parse_tag_list(body)
        except tag_pages.TagListError as exc:
            raise UpstreamError(registry.host, str(exc), status=answer.status) from None
        upstream_next = tag_pages.next_from_link(answer.headers.get("Link")) is not None
        page = tag_pages.paginate(name, tags, asked, upstream_next)
        headers = {"Content-Type": "application/json", API_VERSION_HEADER[0]: API_VERSION_HEADER[1]}
        link = tag_pages.next_link(quote(request.path, safe="/:@"), query, page)
        if link is not None:
            headers["Link"] = link
        data = page.body()
        response = web.Response(status=200, body=data, headers=headers)
        return Reply(response, Served(CacheStatus.BYPASS, 200, len(data), answer.status))
