"""An event-stream subscriber in its own process: ``python -m bench.subscriber SOCKET``.

Prints ``ready`` once subscribed, counts events until SIGTERM, then prints the count.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from appliance.control.client import ControlClient


async def main(socket_path: str) -> int:
    count = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with ControlClient(socket_path) as client:
        stream = await client.events()
        print("ready", flush=True)

        async def consume() -> None:
            nonlocal count
            async for batch in stream:
                count += len(batch.events)

        task = asyncio.create_task(consume())
        await stop.wait()
        task.cancel()
        await stream.close()
    print(count, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
