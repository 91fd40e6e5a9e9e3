"""The ``appliance run`` process: the engine and its control socket, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import signal
from pathlib import Path

from appliance import __version__, memory
from appliance.access.network import IDENTITY_ENFORCED, exposure_warning
from appliance.config.model import Config
from appliance.control.edits import ConfigSource
from appliance.control.server import ControlServer
from appliance.engine import Engine
from appliance.errors import ApplianceError
from appliance.events import EventBus
from appliance.front.ca import CertificateAuthority, expiry_warning
from appliance.front.intermediate import root_warnings

log = logging.getLogger("appliance.engine")
TLS_READ_BUFFER = 32 * 1024


async def serve(
    config: Config, *, ready: asyncio.Event | None = None, source: ConfigSource | None = None
) -> None:
    """Run until SIGTERM/SIGINT.  ``source`` is how ``config`` was built (for hot reloads)."""
    source = source or ConfigSource(config_path=config.config_path)
    loop = asyncio.get_running_loop()
    ca = await loop.run_in_executor(
        None, CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path
    )
    warning = expiry_warning(ca)
    if warning:
        log.warning("%s", warning)
    for warning in root_warnings(ca):
        log.warning("%s", warning)
    engine = Engine(config=config, ca=ca, events=EventBus(queue_size=config.event_queue))
    await engine.start()
    control = ControlServer(engine, source, config.control_socket, group=config.control_group)
    try:
        await control.start()
    except BaseException:
        await engine.close()
        raise
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    addresses = ", ".join(f"{h}:{p}" for h, p in engine.listen_addresses)
    served = " ".join(r.host for r in config.registries)
    log.info("registry-appliance %s listening on %s; intercepting %s", __version__, addresses, served)
    log.info("CA %s (fingerprint %s)", config.ca_cert_path, ca.fingerprint_sha256)
    listening = (config.listen_host, *((config.tls_listen[0],) if config.tls_listen else ()))
    if exposed := exposure_warning(
        listening, engine.door.floor, client_auth=config.access.enabled and IDENTITY_ENFORCED
    ):
        log.warning("%s", exposed)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await control.close()
        await engine.close()


def run(config: Config, source: ConfigSource | None = None) -> int:
    """Entry point of ``appliance run``: returns the process exit status."""
    # asyncio gives every TLS connection a 256 KiB receive buffer, zero-filled up front; skopeo opens
    # a tunnel per request, so a herd of clients costs hundreds of them. Registry clients send
    # small requests (pushes stream through in more, smaller reads), so 32 KiB loses nothing.
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    memory.tune_malloc()
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for directory in (config.cache_dir, config.ca_dir, config.control_socket.parent):
        Path(directory).mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve(config, source=source))
    except ApplianceError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
