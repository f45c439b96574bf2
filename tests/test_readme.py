"""The README's examples run as printed (against the simulator instead of the real BingX)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from sim_thread import simulator_thread
from trio.testing import MockClock

from tradeloop.sim import SimConfig, open_simulator

README = Path(__file__).parent.parent / "README.md"
RUN_LINES = 'config = EngineConfig(exchanges={"bingx": {}}'


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


def _strategy_example() -> str:
    match = re.search(r"## Write a strategy.*?```python\n(.*?)```", README.read_text(), re.S)
    assert match is not None, "the README lost its strategy example"
    return match.group(1)


async def test_the_readme_strategy_trades_on_the_simulator(mock_clock: MockClock, tmp_path: Path) -> None:
    code = _strategy_example()
    definitions, _, run_lines = code.partition(RUN_LINES)
    assert run_lines, "the example no longer ends by running the engine"
    namespace: dict[str, Any] = {}
    exec(definitions, namespace)
    async with open_simulator(SimConfig(symbols=("BTC-USDT",))) as sim:
        config = namespace["EngineConfig"](
            exchanges={"bingx": {"ws_url": sim.ws_url, "rest_url": sim.rest_url}},
            strategies=[namespace["BuyTheDip"]()],
            journal=tmp_path / "journal.sqlite",
        )
        summary = await namespace["TradingEngine"](config).run(duration=130)
    (status,) = summary.strategies
    assert status.enabled and status.klines >= 2 and status.signals >= 1


async def test_the_readme_mock_clock_example_runs_as_printed(mock_clock: MockClock) -> None:
    match = re.search(r"### Controlling time in tests.*?```python\n(.*?)```", README.read_text(), re.S)
    assert match is not None, "the README lost its MockClock example"
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)
    with trio.fail_after(3600):
        await namespace["test_ten_candles"](mock_clock)


def test_the_readme_asyncio_engine_example_trades_on_the_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    match = re.search(r"engine runs under `asyncio.run` too.*?```python\n(.*?)```", README.read_text(), re.S)
    assert match is not None, "the README lost its asyncio engine example"
    code = match.group(1)
    urls_line = next(line for line in code.splitlines() if line.startswith("urls = "))
    assert "duration=60" in code
    monkeypatch.chdir(tmp_path)  # the default journal lands here
    with simulator_thread(SimConfig(symbols=("BTC-USDT",), speed=60, push_interval=0.02)) as sim:
        urls = {"ws_url": sim.sim.ws_url, "rest_url": sim.sim.rest_url}
        # as printed, but on this simulator's ports and for half a second
        exec(code.replace(urls_line, f"urls = {urls!r}").replace("duration=60", "duration=0.5"), {})
    trades, _, equity = capsys.readouterr().out.partition(" trades, equity ")
    assert int(trades) >= 2 and Decimal(equity) > 0


def test_the_docs_asyncio_example_runs_as_printed(capsys: pytest.CaptureFixture[str]) -> None:
    page = (README.parent / "docs" / "concepts" / "asyncio.md").read_text()
    match = re.search(r"```python\n(.*?)```", page, re.S)
    assert match is not None, "the asyncio page lost its example"
    exec(match.group(1), {})  # asyncio.run: the simulator and the streams in one asyncio loop
    open_time, close = capsys.readouterr().out.split()
    assert int(open_time) % 60_000 == 0 and Decimal(close) > 0
