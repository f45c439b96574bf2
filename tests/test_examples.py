"""The shipped examples: the config file is valid and trades once its two URLs point elsewhere, and
every example script runs to its end against the simulator, as a user would start it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from trio.testing import MockClock

from tradeloop.exchanges.bingx import BingX
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamConfig
from tradeloop.symbols import Market
from tradeloop.trading import TradingEngine, load_config

EXAMPLES = Path(__file__).parent.parent / "examples"
EXAMPLE = EXAMPLES / "bingx-paper.toml"
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


SCRIPTS = {
    # script: (its arguments after --sim, patterns its output must match)
    "stream_candles.py": ([], [r"closed candle 1/3", r"drops 1 socket", r"closed candle 3/3", r"reconnects: 1"]),
    "buy_the_dip.py": ([], [r"buy-the-dip: [1-9]\d* closed candles, [1-9]\d* signals", r"equity \d+\.\d\d USDT"]),
    "asyncio_bot.py": (["--candles", "2"], [r"tick BTC/USDT:USDT \d", r"closed \d+ \d.*\n(.*\n)*closed \d+ \d"]),
    "backtest_own_strategy.py": ([], [r"2860 candles replayed, [1-9]\d* fills", r"equity \d+\.\d\d USDT"]),
}
RUN_ELSEWHERE = {
    "test_with_the_simulator.py": "tests/test_testing_plugin.py runs it with pytest in a fresh directory",
}


def test_every_example_script_is_run_by_a_test() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == set(SCRIPTS) | set(RUN_ELSEWHERE)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_script_runs_against_the_simulator(script: str, tmp_path: Path) -> None:
    arguments, patterns = SCRIPTS[script]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--sim", *arguments],
        cwd=tmp_path,  # a user's directory, not the repository
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for pattern in patterns:
        assert re.search(pattern, result.stdout), result.stdout
    assert "Traceback" not in result.stderr
