"""examples/asyncio_bot.py's bot() against the simulator (in the same asyncio loop) until Ctrl-C
(run by test_asyncio_bot_example.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from pathlib import Path

from disconnect_scenario import FAST_MARKET

from tradeloop.sim import open_simulator

EXAMPLE = Path(__file__).parent.parent / "examples" / "asyncio_bot.py"

if __name__ == "__main__":
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING)  # stderr is kept for warnings
    spec = importlib.util.spec_from_file_location("asyncio_bot", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    async def bot_next_to_the_simulator() -> None:
        async with open_simulator(FAST_MARKET) as sim:
            await example.bot(sim.exchange())

    with contextlib.suppress(KeyboardInterrupt):  # as the example's own __main__ does
        asyncio.run(bot_next_to_the_simulator())
    print("stopped cleanly")
