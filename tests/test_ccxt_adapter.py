"""Any ccxt exchange as ``ccxt:<id>``: ccxt's bingx client, unchanged, against the simulator.

ccxt runs on asyncio: natively in an asyncio program's loop, under Trio in the adapter's own thread,
so these tests run on the real clock (MockClock cannot drive another thread's loop), the simulator in
the test's own loop (in a thread of its own, :mod:`sim_thread`, for a test that runs loops itself). The simulator runs
market time 60x or 120x (a 1m candle a second, or half a second); each test stays within a few real seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
import trio
from sim_thread import simulator_thread

from tradeloop.cli import main
from tradeloop.errors import ForeignLoopError, InvalidValueError, TradeloopError
from tradeloop.exchanges import create_exchange, exchange_class
from tradeloop.exchanges.base import ProtocolError
from tradeloop.exchanges.ccxt import CcxtExchange
from tradeloop.exchanges.ccxt._convert import to_decimal, to_klines
from tradeloop.models import Kline
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.sim.server import Simulator
from tradeloop.streams import StreamConfig, StreamManager
from tradeloop.trading.config import config_from_mapping

SWAP = "BTC/USDT:USDT"
FAST = SimConfig(speed=60, push_interval=0.05, history_seconds=3600)
FASTER = SimConfig(speed=120, push_interval=0.05, history_seconds=3600)
"""A one-minute candle every half second."""
STREAMS = StreamConfig(rest_poll_interval=0.2, reconnect_delay=0.1, reconnect_delay_max=0.5)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _closed_truth(sim: Simulator, symbol_id: str, kline: Kline | dict[str, Any]) -> list[Decimal]:
    """The simulator's final values of the candle ``kline`` is (the test fails if it is not closed)."""
    open_time = kline.open_time if isinstance(kline, Kline) else kline["open_time"]
    (candle,) = sim.candles(symbol_id, "1m", open_time, open_time)
    assert candle.closed
    return [candle.open, candle.high, candle.low, candle.close, candle.volume]


def _values(kline: Kline | dict[str, Any]) -> list[Decimal]:
    if isinstance(kline, Kline):
        return [kline.open, kline.high, kline.low, kline.close, kline.volume]
    return [Decimal(str(kline[field])) for field in ("open", "high", "low", "close", "volume")]


async def _watch_cli(*args: str) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "tradeloop.cli", "watch", *args]
    with trio.fail_after(30):
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line, parse_float=Decimal) for line in result.stdout.decode().splitlines()]


async def test_watch_cli_ccxt_push_delivers_the_native_clients_closed_candles() -> None:
    async with open_simulator(FAST) as sim:
        urls = ("--ws-url", sim.ws_url, "--rest-url", sim.rest_url)
        common = ("BTC/USDT:USDT", "--timeframe", "1m", "--closed-only", "--count", "2", *urls)
        async with trio.open_nursery() as nursery:
            results: dict[str, list[dict[str, Any]]] = {}

            async def watch(name: str) -> None:
                results[name] = await _watch_cli(name, *common)

            nursery.start_soon(watch, "ccxt:bingx")
            nursery.start_soon(watch, "bingx")
        sockets = sim.stats.connections_total
        truths = {name: [_closed_truth(sim, "BTC-USDT", k) for k in rows] for name, rows in results.items()}

    assert sockets >= 2  # both watched over the simulator's socket: ccxt in push mode, not polling
    ccxt_rows, native_rows = results["ccxt:bingx"], results["bingx"]
    assert [k["exchange"] for k in ccxt_rows] == ["ccxt:bingx"] * 2
    for rows, truth in ((ccxt_rows, truths["ccxt:bingx"]), (native_rows, truths["bingx"])):
        assert [k["closed"] for k in rows] == [True, True]
        assert rows[1]["open_time"] - rows[0]["open_time"] == 60_000
        assert [_values(k) for k in rows] == truth
    shared = {k["open_time"] for k in ccxt_rows} & {k["open_time"] for k in native_rows}
    for open_time in shared:  # where both saw a candle, they printed the same one
        ccxt_kline = next(k for k in ccxt_rows if k["open_time"] == open_time)
        native_kline = next(k for k in native_rows if k["open_time"] == open_time)
        assert {**ccxt_kline, "exchange": "bingx"} == native_kline


async def _stream_klines(
    sim: Simulator, *, poll: bool, count: int, after_first: Callable[[Simulator], object] = lambda sim: None
) -> tuple[list[Kline], Any]:
    """``count`` closed candles of ccxt:bingx through the stream layer, ``after_first(sim)`` called
    after the first; with the topic's health, each checked against the simulator's truth."""
    exchange = create_exchange("ccxt:bingx", ws_url=sim.ws_url, rest_url=sim.rest_url, poll=poll)
    assert isinstance(exchange, CcxtExchange)
    async with exchange, StreamManager.open([exchange], STREAMS) as streams:
        with anyio.fail_after(20):
            async with streams.klines(exchange.name, SWAP, "1m", closed_only=True) as channel:
                klines = [await channel.receive()]
                after_first(sim)
                klines += [await channel.receive() for _ in range(count - 1)]
                (health,) = streams.health().topics
    truth = [_closed_truth(sim, "BTC-USDT", k) for k in klines]
    assert [_values(k) for k in klines] == truth
    assert [b.open_time - a.open_time for a, b in itertools.pairwise(klines)] == [60_000] * (count - 1)
    return klines, health


def _ccxt_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "tradeloop ccxt:bingx"]


async def test_fetch_only_ccxt_client_streams_through_the_poller() -> None:
    async with open_simulator(FAST) as sim:
        klines, health = await _stream_klines(sim, poll=True, count=3)
        stats = sim.stats
        assert stats.connections_total == 0  # nothing but REST
        assert stats.rest_requests > 0

    assert health.mode == "rest" and health.rest_errors == 0
    assert {k.exchange for k in klines} == {"ccxt:bingx"}


@pytest.mark.anyio
async def test_watched_klines_survive_dropped_sockets_with_no_gap(anyio_backend: str) -> None:
    async with open_simulator(FASTER) as sim:
        threads: list[str] = []
        _, health = await _stream_klines(
            sim, poll=False, count=3, after_first=lambda sim: (threads.extend(_ccxt_threads()), sim.faults.drop_all())
        )
        assert sim.stats.dropped >= 1

    assert health.mode == "watch"
    # The dropped socket failed the watch loop: a stream error, not a REST one.
    assert health.watch_errors >= 1 and health.rest_errors == 0, health
    assert any(e.kind == "watch" and "Connection closed" in e.message for e in health.recent_errors), health
    # ccxt.pro runs natively in an asyncio program's loop; under Trio on a loop in a thread of its own
    assert threads == ([] if anyio_backend == "asyncio" else ["tradeloop ccxt:bingx"])
    assert _ccxt_threads() == []  # closed with the adapter


@pytest.mark.anyio
async def test_watched_ticks_and_an_unknown_symbol(anyio_backend: str) -> None:
    async with open_simulator(FASTER) as sim:
        exchange = create_exchange("ccxt:bingx", ws_url=sim.ws_url, rest_url=sim.rest_url)
        assert isinstance(exchange, CcxtExchange)
        async with exchange, StreamManager.open([exchange], STREAMS) as streams:
            with anyio.fail_after(20):
                async with streams.ticks(exchange.name, "BTC/USDT") as ticks:
                    first, second = await ticks.receive(), await ticks.receive()
                    (health,) = streams.health().topics
                async with streams.klines(exchange.name, "DOGE/USDT:USDT", "1m") as unknown:
                    with pytest.raises(TradeloopError, match="does not list 'DOGE/USDT:USDT'"):
                        await unknown.receive()

    assert health.mode == "watch" and health.messages >= 2
    for tick in (first, second):
        assert tick.exchange == "ccxt:bingx" and tick.symbol == "BTC/USDT"
        assert tick.bid is not None and tick.ask is not None and tick.bid < tick.ask
    assert second.time >= first.time


def test_a_client_belongs_to_the_loop_that_uses_it_until_closed() -> None:
    with simulator_thread(FASTER) as sim:
        exchange = create_exchange("ccxt:bingx", ws_url=sim.sim.ws_url, rest_url=sim.sim.rest_url)
        assert isinstance(exchange, CcxtExchange)

        async def check_symbol() -> None:
            async with httpx.AsyncClient() as http:
                await exchange.check_symbol(http, SWAP)

        async def refused() -> None:
            with pytest.raises(ForeignLoopError, match="open in another event loop: use it from that loop"):
                await check_symbol()

        async def check_and_close() -> None:
            async with exchange:
                await check_symbol()

        trio.run(check_symbol)
        asyncio.run(refused())  # its session and thread belong to Trio's side
        trio.run(exchange.aclose)
        asyncio.run(check_and_close())  # reopened in this loop: ccxt's session is bound here
        trio.run(check_and_close)  # and back


def test_registry_names_and_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert exchange_class(" CCXT:OKX ").name == "ccxt:okx"
    assert exchange_class("ccxt:okx") is exchange_class("ccxt:okx")
    with pytest.raises(InvalidValueError, match=r"unknown ccxt exchange 'nope': the ids are listed by .*exchanges"):
        exchange_class("ccxt:nope")
    assert main(["watch", "bingx", "BTC-USDT", "--timeframe", "1m", "--poll"]) != 0
    assert capsys.readouterr().err.strip().endswith("--poll applies to ccxt:<id> exchanges; bingx always streams")
    monkeypatch.delitem(sys.modules, "tradeloop.exchanges.ccxt")
    monkeypatch.setitem(sys.modules, "ccxt", None)
    with pytest.raises(TradeloopError, match=r"^exchange 'ccxt:okx' needs ccxt: pip install 'tradeloop\[ccxt\]'$"):
        exchange_class("ccxt:okx")


def test_urls_keep_ccxts_paths_on_the_given_origins() -> None:
    exchange = create_exchange("ccxt:bingx", ws_url="ws://127.0.0.1:1/ignored", rest_url="http://127.0.0.1:2")
    assert isinstance(exchange, CcxtExchange)
    api = exchange.client.urls["api"]
    assert api["ws"]["linear"] == "ws://127.0.0.1:1/swap-market"
    assert api["ws"]["spot"] == "ws://127.0.0.1:1/market"
    assert api["swap"] == "http://127.0.0.1:2/openApi"
    okx = create_exchange("ccxt:okx")
    assert isinstance(okx, CcxtExchange)
    assert okx.client.urls["api"]["ws"].startswith("wss://")  # untouched without URLs


def test_ccxt_floats_become_the_exchanges_digits() -> None:
    assert to_decimal(0.1, "open") == Decimal("0.1") and str(to_decimal(60244.2, "open")) == "60244.2"
    rows = [[60_000, 1.5, 2.0, 1.0, 1.25, None], [120_000, 1.25, 1.3, 1.2, 1.3, 7]]
    first, second = to_klines("ccxt:x", SWAP, "1m", rows, closed_before_newest=True)
    assert (first.closed, second.closed) == (True, False) and first.volume == 0 and second.volume == 7
    assert not any(k.closed for k in to_klines("ccxt:x", SWAP, "1m", rows, closed_before_newest=False))
    for bad in (float("nan"), None, True, "x"):
        with pytest.raises(ProtocolError, match="bad_field: close"):
            to_klines("ccxt:x", SWAP, "1m", [[60_000, 1.0, 1.0, 1.0, bad, 1.0]], closed_before_newest=True)


def test_config_table_with_the_prefix() -> None:
    config = config_from_mapping(
        {
            "exchanges": {"ccxt:BingX": {"ws_url": "ws://127.0.0.1:1", "rest_url": "http://127.0.0.1:2"}},
            "strategies": [{"type": "sma_crossover", "symbols": [SWAP], "size": "0.01"}],
        }
    )
    (client,) = config.clients.values()
    assert list(config.clients) == ["ccxt:bingx"] and isinstance(client, CcxtExchange)
    assert client.client.urls["api"]["swap"] == "http://127.0.0.1:2/openApi"
