"""``tradeloop watch``: JSON lines from a real process against the embedded exchange."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest
import trio

from tradeloop.cli import main
from tradeloop.sim import SimConfig, open_simulator


async def _watch(*args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "tradeloop.cli", "watch", *args]
    with trio.fail_after(30):
        return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


async def test_watch_prints_count_klines_then_exits() -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), push_interval=0.05, step_seconds=0.05)) as sim:
        result = await _watch(
            "BingX", "BTC-USDT", "--timeframe", "1m", "--ws-url", sim.ws_url, "--rest-url", sim.rest_url, "--count", "3"
        )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3
    kline = json.loads(lines[0], parse_float=Decimal)
    assert set(kline) == {
        *("type", "exchange", "symbol", "timeframe", "open_time", "open", "high", "low", "close", "volume", "closed"),
    }
    assert (kline["type"], kline["exchange"], kline["symbol"], kline["timeframe"]) == (
        "kline",
        "bingx",
        "BTC/USDT:USDT",
        "1m",
    )
    assert isinstance(kline["open_time"], int) and isinstance(kline["close"], Decimal)
    assert kline["low"] <= kline["close"] <= kline["high"]


async def test_watch_ticker_on_spot() -> None:
    async with open_simulator(SimConfig(symbols=("ETH-USDT",), push_interval=0.05)) as sim:
        result = await _watch(
            "bingx", "ETH/USDT", "--ticker", "--ws-url", sim.spot_ws_url, "--rest-url", sim.rest_url, "--count", "2"
        )
    assert result.returncode == 0, result.stderr.decode()
    ticks = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [t["type"] for t in ticks] == ["tick", "tick"]
    assert ticks[0]["symbol"] == "ETH/USDT" and ticks[0]["bid"] <= ticks[0]["ask"]
    assert set(ticks[0]) == {"type", "exchange", "symbol", "time", "last", "bid", "ask", "bid_size", "ask_size"}


async def test_unreachable_server_is_one_clear_line_and_non_zero() -> None:
    result = await _watch(
        "bingx",
        "BTC-USDT",
        "--ticker",
        "--ws-url",
        "ws://127.0.0.1:9/swap-market",
        "--rest-url",
        "http://127.0.0.1:9",
        "--first-data-timeout",
        "2",
    )
    assert result.returncode == 1
    (line,) = result.stderr.decode().strip().splitlines()
    assert "no data from bingx for BTC/USDT:USDT within 2 s" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["watch", "kraken", "BTC-USDT", "--ticker"], "unknown exchange 'kraken': expected one of binance, bingx, or"),
        (["watch", "bingx", "BTCUSDT", "--ticker"], "invalid symbol 'BTCUSDT'"),
        (["watch", "bingx", "BTC-USDT", "--timeframe", "2m"], "invalid timeframe '2m'"),
        (["watch", "bingx", "BTC-USDT", "--timeframe", "1m", "--count", "0"], "invalid count '0'"),
        (
            ["watch", "bingx", "BTC/USDT", "--timeframe", "1m", "--ws-url", "ws://127.0.0.1:5/swap-market"],
            "/swap-market is the path of the swap socket; spot symbols (such as 'BTC/USDT') stream from /market",
        ),
    ],
)
def test_bad_arguments_exit_2_naming_the_value(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


async def test_a_failing_rest_is_told_on_stderr_while_candles_flow() -> None:
    # --rest-url points where nothing listens: closes cannot be confirmed and go out as streamed.
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), speed=60.0, push_interval=0.1)) as sim:
        result = await _watch(
            "bingx", "BTC/USDT:USDT", "--timeframe", "1m", "--closed-only", "--count", "4",
            "--ws-url", sim.ws_url, "--rest-url", "http://127.0.0.1:9",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 4
    warnings = result.stderr.decode().splitlines()
    assert warnings and all(line.startswith("tradeloop watch: ") for line in warnings), warnings
    assert any("connect to 127.0.0.1:9 failed (rest)" in line for line in warnings), warnings
