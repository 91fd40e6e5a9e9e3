"""One control call made from a screen, with its failures shown as a notification."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.screen import Screen

from appliance.control.client import ControlClient, ControlError, EngineUnavailable
from tui.connection import NotConnected
from tui.state import holder

T = TypeVar("T")


async def call_engine(screen: Screen[Any], call: Callable[[ControlClient], Awaitable[T]]) -> T | None:
    """``call``'s answer, or None once a refusal or a missing engine has been notified."""
    try:
        return await call(holder(screen).link.client)
    except ControlError as exc:
        screen.notify(str(exc), title="refused", severity="error", timeout=8)
    except (EngineUnavailable, NotConnected) as exc:
        screen.notify(str(exc), severity="error")
    return None
