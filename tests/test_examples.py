"""The shipped example config: valid, and the same file trades once its two URLs point elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from trio.testing import MockClock

from tradeloop.exchanges.bingx import BingX
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamConfig
from tradeloop.symbols import Market
from tradeloop.trading import TradingEngine, load_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "bingx-paper.toml"
REAL_WS = "wss://open-api-swap.bingx.com/swap-market"
REAL_REST = "https://open-api.bingx.com"


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


def test_the_example_targets_the_real_exchange() -> None:
    config = load_config(EXAMPLE)
    client = config.clients["bingx"]
    assert isinstance(client, BingX)
    assert client.ws_url(Market.SWAP) == REAL_WS and client.rest_url == REAL_REST


async def test_changing_the_two_urls_runs_it_against_the_simulator(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), history_seconds=3600)) as sim:
        text = EXAMPLE.read_text().replace(REAL_WS, sim.ws_url).replace(REAL_REST, sim.rest_url)
        path = tmp_path / "offline.toml"
        path.write_text(text)
        config = load_config(path)
        summary = await TradingEngine(config).run(duration=150)
    (strategy,) = summary.strategies
    assert strategy.enabled and strategy.klines >= 2
    assert summary.journal.parent == tmp_path
    assert isinstance(config.streams, StreamConfig)
