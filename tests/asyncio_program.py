"""A plain asyncio program using tradeloop (run by test_asyncio_program.py with ``-W error``).

It runs the simulator in its own loop (no thread), streams closed candles and ticks from it,
drops every socket, checks each candle arrived exactly once; then has a subscription rejected and
a topic fall back to REST and return (tests/callback_scenarios.py: work done in the socket's
callback, where a bare ``asyncio.run`` gives no anyio runner to name the library); and verifies it
left nothing behind: no task, no open file descriptor (sockets included), no warning (stderr
must stay empty).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys

from callback_scenarios import fall_back_to_rest_on_malformed_frames, reject_an_unknown_symbol
from disconnect_scenario import FAST_MARKET, stream_through_a_disconnect

from tradeloop.sim import open_simulator


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def main() -> None:
    before = open_descriptors()
    async with open_simulator(FAST_MARKET) as sim:
        await stream_through_a_disconnect(sim)
        await reject_an_unknown_symbol(sim)
        await fall_back_to_rest_on_malformed_frames(sim)
    gc.collect()
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert not left, f"tasks left behind: {left}"
    leaked = open_descriptors() - before
    assert not leaked, f"descriptors left open: {[os.readlink(f'/proc/self/fd/{fd}') for fd in leaked]}"
    print("ok: exactly-once candles across a dropped socket, a rejection, a REST fallback; nothing left behind")


if __name__ == "__main__":
    # tradeloop's logs (the dropped socket is logged) on stdout: stderr is kept for warnings.
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING)
    asyncio.run(main())
