"""examples/asyncio_bot.py, the README's asyncio example, against the simulator (in the same asyncio loop)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest
from disconnect_scenario import FAST_MARKET

from tradeloop.sim import open_simulator
from tradeloop.testing import assert_candles_match

TESTS = Path(__file__).parent
EXAMPLE = TESTS.parent / "examples" / "asyncio_bot.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asyncio_bot", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_asyncio_example_receives_closed_candles_exactly_once(anyio_backend: str) -> None:
    example = load_example()
    async with open_simulator(FAST_MARKET) as sim:
        closed = await example.bot(sim.exchange(), candles=3)
        assert len(closed) == 3
        assert_candles_match(sim, closed)


def test_ctrl_c_stops_the_asyncio_bot_cleanly() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    with subprocess.Popen(
        [sys.executable, "-u", "-W", "error", str(TESTS / "asyncio_bot_until_ctrl_c.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as bot:
        assert bot.stdout is not None
        deadline = threading.Timer(60, bot.kill)  # a bot that never prints a candle fails, not hangs
        deadline.start()
        try:
            for line in bot.stdout:
                if line.startswith("closed"):
                    break
            bot.send_signal(signal.SIGINT)
            out, err = bot.communicate(timeout=30)
        finally:
            deadline.cancel()
            bot.kill()
    assert bot.returncode == 0, err
    assert err == "", f"the bot warned on the way out: {err}"
    assert "stopped cleanly" in out
