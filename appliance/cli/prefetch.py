"""Warm the cache ahead of time by pulling images through a running appliance.

``appliance prefetch IMAGE...`` talks to the engine's own mirror endpoint (``/v2/...?ns=``) exactly
as a client would, so every byte lands in the cache through the normal verified fill path. For an
index it fetches every child manifest (or only the platforms asked for) and all their blobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from appliance import oci
from appliance.config.model import Config
from appliance.errors import ConfigError, UpstreamError
from appliance.registry.references import ImageRef

_INDEX_TYPES = (oci.OCI_INDEX, oci.DOCKER_MANIFEST_LIST)


@dataclass(frozen=True, slots=True)
class PrefetchResult:
    image: str
    manifests: int
    blobs: int
    bytes: int


def engine_url(config: Config) -> str:
    host = config.listen_host
    if host in ("", "*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.listen_port}"


async def prefetch(
    config: Config,
    image: ImageRef,
    *,
    platforms: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _line: None,
) -> PrefetchResult:
    registry = config.registry_for(image.registry)
    if registry is None:
        raise ConfigError(str(image), f"registry {image.registry} is not configured")
    base = engine_url(config)
    ns = registry.host
    seen_blobs: set[str] = set()
    counts = {"manifests": 0, "blobs": 0, "bytes": 0}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=config.timeouts.proxy_read * 2)

    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=False) as session:

        async def get(path: str, accept: str | None = None) -> tuple[bytes, str]:
            headers = {"Accept": accept} if accept else {}
            url = f"{base}/v2/{image.repository}/{path}"
            try:
                async with session.get(url, params={"ns": ns}, headers=headers) as answer:
                    if answer.status != 200:
                        text = (await answer.text())[:300]
                        raise UpstreamError(
                            registry.host, f"{path}: HTTP {answer.status} {text}", status=answer.status
                        )
                    if accept is not None:
                        return await answer.read(), answer.headers.get("Content-Type", "")
                    size = 0
                    async for chunk in answer.content.iter_chunked(1 << 20):
                        size += len(chunk)
                    counts["bytes"] += size
                    return b"", ""
            except aiohttp.ClientError as exc:
                raise UpstreamError(registry.host, f"cannot reach the appliance at {base}: {exc}") from None

        async def manifest(reference: str) -> None:
            body, content_type = await get(f"manifests/{reference}", oci.FULL_ACCEPT)
            counts["manifests"] += 1
            document = json.loads(body)
            media = oci.manifest_media_type(body, content_type)
            if media in _INDEX_TYPES:
                for child in document.get("manifests", []):
                    platform = child.get("platform") or {}
                    name = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
                    if platform.get("variant"):
                        name += f"/{platform['variant']}"
                    if platforms and not any(name.startswith(p) for p in platforms):
                        continue
                    await manifest(child["digest"])
                return
            blobs = [document.get("config", {}), *document.get("layers", [])]
            for blob in blobs:
                digest = blob.get("digest")
                if not digest or digest in seen_blobs or blob.get("urls"):
                    continue  # foreign layers are not distributable through registries
                seen_blobs.add(digest)
                progress(f"{digest} ({blob.get('size', '?')} bytes)")
                await get(f"blobs/{digest}")
                counts["blobs"] += 1

        await manifest(image.reference)
    return PrefetchResult(str(image), counts["manifests"], counts["blobs"], counts["bytes"])
