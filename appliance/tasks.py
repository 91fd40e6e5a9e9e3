"""Background tasks a component owns: kept referenced until done, waited for or cancelled together.

asyncio keeps only a weak reference to a task, so a task nobody holds can vanish mid-flight; and a
component that starts tasks must be able to stop them all when it closes.  Fills, pull-ahead and
the front door's connection handlers each own one of these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class OwnedTasks:
    """A set of running tasks, each dropped from the set when it finishes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        if name is not None:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Wait until every task has finished, including ones started meanwhile."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel_all(self, grace: float | None = None) -> None:
        """Cancel every task and wait (at most ``grace`` seconds, if given) for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            done, _ = await asyncio.wait(tasks, timeout=grace)
            for task in done:  # their failures were theirs to report; retrieved, so none is logged twice
                if not task.cancelled():
                    task.exception()
