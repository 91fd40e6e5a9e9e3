"""OwnedTasks: tasks kept until done, waited for or cancelled together."""

from __future__ import annotations

import asyncio
import gc

from appliance.tasks import OwnedTasks


async def test_a_spawned_task_runs_to_the_end_without_anyone_holding_it() -> None:
    tasks = OwnedTasks()
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.01)
        gc.collect()  # an unreferenced task could be collected here; an owned one is not
        await asyncio.sleep(0.01)
        done.append("yes")

    tasks.spawn(work(), name="work")
    assert len(tasks) == 1
    await tasks.wait_idle()
    assert done == ["yes"] and len(tasks) == 0


async def test_wait_idle_also_waits_for_tasks_started_meanwhile() -> None:
    tasks = OwnedTasks()
    done: list[int] = []

    async def second() -> None:
        await asyncio.sleep(0.02)
        done.append(2)

    async def first() -> None:
        await asyncio.sleep(0.01)
        tasks.spawn(second())
        done.append(1)

    tasks.spawn(first())
    await tasks.wait_idle()
    assert done == [1, 2]


async def test_cancel_all_stops_everything_and_keeps_failures_quiet() -> None:
    tasks = OwnedTasks()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def fails() -> None:
        raise RuntimeError("its own failure")

    sleeper = tasks.spawn(forever())
    failing = tasks.spawn(fails())
    await started.wait()
    await asyncio.sleep(0)
    await asyncio.wait_for(tasks.cancel_all(grace=5), 5)
    assert sleeper.cancelled()
    assert isinstance(failing.exception(), RuntimeError)
    assert len(tasks) == 0
