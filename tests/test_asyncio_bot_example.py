"""examples/asyncio_bot.py, the README's asyncio example, against the simulator (in its own Trio thread)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from disconnect_scenario import FAST_MARKET
from sim_thread import simulator_thread

from tradeloop.testing import assert_candles_match

EXAMPLE = Path(__file__).parent.parent / "examples" / "asyncio_bot.py"


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
    with simulator_thread(FAST_MARKET) as simulator:
        closed = await example.bot(simulator.call(lambda sim: sim.exchange()), candles=3)
        assert len(closed) == 3
        simulator.call(lambda sim: assert_candles_match(sim, closed))
