"""Configuration edits over the control socket: write the TOML file, rebuild, swap into the engine.

Edits go through ``config.toml_edit`` (comments kept, whole document validated, atomic write), then the
full configuration is rebuilt from the same sources the engine started with (``ConfigSource``:
file < seed env vars < flags) and swapped into the running engine.  Edits are serialised by one lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance import protocol as p
from appliance.config import toml_edit as config_file
from appliance.config.load import LoadResult, Overrides, find_config_path, load_config
from appliance.config.model import Config, Secret, SecretStore
from appliance.config.values import default_config_path
from appliance.control.http import Refused, json_response, read_body
from appliance.errors import ConfigError

if TYPE_CHECKING:
    from appliance.engine import Engine

# One logger for the whole control server, whichever module logs.
log = logging.getLogger("appliance.control")


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """How the running configuration was built, so a hot reload builds it the same way."""

    overrides: Overrides = field(default_factory=Overrides)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    config_path: Path | None = None  # ``--config``; None: found as at start-up
    use_env: bool = True

    def load(self) -> LoadResult:
        return load_config(self.overrides, self.environ, self.config_path, use_env=self.use_env)

    def edit_path(self, running: Config) -> Path:
        """The TOML file edits go to: the one in use, else the default one (created on first edit)."""
        return (
            self.config_path
            or running.config_path
            or find_config_path(None, self.environ)
            or default_config_path(self.environ)
        )


class ConfigEdits:
    """The configuration endpoints (reload, registries, credentials) for ``engine``."""

    def __init__(self, engine: Engine, source: ConfigSource) -> None:
        self.engine = engine
        self.source = source
        self._lock = asyncio.Lock()

    async def _edit(self, what: str, change: Callable[[Path], Config]) -> web.Response:
        async with self._lock:
            path = self.source.edit_path(self.engine.config)
            loop = asyncio.get_running_loop()
            from_file = await loop.run_in_executor(None, change, path)
            result = await self._apply(f"{what}; written to {path}", path)
            warnings = list(result.warnings)
            running = self.engine.config
            if from_file.registries != running.registries:
                warnings.append("the REGISTRIES env var or a flag overrides the file's registries")
            if from_file.credentials != running.credentials:
                warnings.append("AUTH_REGISTRIES overrides the file's credentials")
            return json_response(dataclasses.replace(result, warnings=tuple(warnings)))

    async def _apply(self, message: str, path: Path) -> p.ConfigChange:
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, self.source.load)
        except ConfigError as exc:
            # The file was written and is valid on its own, but the env vars or flags on top reject
            # it: keep running the previous configuration and say so.
            return p.ConfigChange(
                config_path=str(path),
                applied=False,
                message=f"{message}; not applied: {exc}",
            )
        pending = self.engine.reload(loaded.config)
        log.info("configuration reloaded: %s", message)
        return p.ConfigChange(
            config_path=str(path),
            applied=True,
            message=message,
            warnings=loaded.warnings,
            restart_required=pending,
        )

    async def reload(self, request: web.Request) -> web.Response:
        async with self._lock:
            path = self.source.edit_path(self.engine.config)
            loop = asyncio.get_running_loop()
            loaded = await loop.run_in_executor(None, self.source.load)
            pending = self.engine.reload(loaded.config)
            return json_response(
                p.ConfigChange(
                    config_path=str(path),
                    applied=True,
                    message="configuration reloaded",
                    warnings=loaded.warnings,
                    restart_required=pending,
                )
            )

    async def add_registry(self, request: web.Request) -> web.Response:
        edit = p.RegistryEdit.from_json(await read_body(request))
        if edit.unset:
            raise Refused(p.ErrorCode.BAD_REQUEST, "unset makes no sense when adding a registry", "unset")
        env = self.source.environ
        host = str(edit.values.get("host", ""))
        return await self._edit(
            f"registry {host} added", lambda path: config_file.add_registry(path, edit.values, env)
        )

    async def update_registry(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        edit = p.RegistryEdit.from_json(await read_body(request))
        changes: dict[str, Any] = {**edit.values, **{key: None for key in edit.unset}}
        if "host" in changes and changes["host"] != host:
            raise Refused(p.ErrorCode.BAD_REQUEST, "a registry's host cannot change; add a new one", "host")
        env = self.source.environ
        return await self._edit(
            f"registry {host} changed", lambda path: config_file.update_registry(path, host, changes, env)
        )

    async def remove_registry(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        env = self.source.environ
        return await self._edit(
            f"registry {host} removed", lambda path: config_file.remove_registry(path, host, env)
        )

    async def set_credential(self, request: web.Request) -> web.Response:
        edit = p.CredentialEdit.from_json(await read_body(request))
        env = self.source.environ
        password = Secret(edit.password) if edit.password is not None else None

        def change(path: Path) -> Config:
            return config_file.set_credential(
                path,
                edit.scope,
                edit.username,
                password=password,
                store=SecretStore(edit.store.value),
                reference=edit.reference,
                environ=env,
            )

        return await self._edit(f"credential for {edit.scope} set ({edit.store})", change)

    async def remove_credential(self, request: web.Request) -> web.Response:
        scope = request.query.get("scope", "")
        if not scope:
            raise Refused(p.ErrorCode.BAD_REQUEST, "the scope query parameter is required", "scope")
        env = self.source.environ
        return await self._edit(
            f"credential for {scope} removed", lambda path: config_file.remove_credential(path, scope, env)
        )
