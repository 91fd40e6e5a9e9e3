"""The access log: one line per request event, text (status first, like the seed's) or JSON.

With client access control on, a line carries ``identity=NAME`` and ``access=RESULT`` (with the
reason when it is not ``allowed``): one audit record per decision.  Client-chosen text arrives
escaped (``registry.outcome.event``), so a line is always exactly one line.
"""

from __future__ import annotations

import json
import logging
import time

from appliance.config.model import LogFormat
from appliance.events import Event

log = logging.getLogger("appliance.access")


class AccessLog:
    """An EventBus listener that writes each event as one log line."""

    def __init__(self, fmt: LogFormat) -> None:
        self.fmt = fmt

    def __call__(self, event: Event) -> None:
        log.info("%s", self.format(event))

    def format(self, event: Event) -> str:
        if self.fmt is LogFormat.JSON:
            return json.dumps(event.to_dict(), separators=(",", ":"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.time))
        where = f"{event.registry}/{event.repository}" if event.repository else event.registry
        ref = f" {event.reference}" if event.reference else ""
        upstream = "-" if event.upstream_status is None else str(event.upstream_status)
        line = (
            f"{event.status:<11} [{stamp}] {event.client} {event.method} {event.kind} {where}{ref} "
            f"{event.http_status} {event.bytes} {event.duration:.3f}s upstream={upstream}"
        )
        if event.identity:
            line += f" identity={event.identity}"
        if event.access:
            # The audit record (issue 17.7): the decision, and why, in words without secrets.
            line += f" access={event.access}"
            if event.access != "allowed" and event.access_reason:
                line += f" ({event.access_reason})"
        return f"{line} {event.message}" if event.message else line
