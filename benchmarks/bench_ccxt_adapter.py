"""The ccxt adapter's cost per message over bare ccxt.pro, against the simulator in its own process.

``python -m benchmarks.bench_ccxt_adapter [--quick]``. The simulator pushes BTC's and ETH's 1m
swap candles every millisecond; in this process, for the same wall time each:

- ``bare``: ccxt.pro's ``watch_ohlcv`` loops on ``asyncio.run``, as ccxt's docs show them;
- ``adapter``: :meth:`CcxtExchange.watch` under Trio, the same loops on the adapter's asyncio
  thread, each wake-up converted to Klines and handed to Trio (one ``run_sync_soon`` per message);
- ``streams``: the whole stream layer on top (``StreamManager.klines``: candle closer, fan-out);
- ``adapter/asyncio``, ``streams/asyncio``: the same two under ``asyncio.run``, where the adapter
  awaits ccxt.pro in the program's own loop (no thread, no hop).

CPU is this process's (``time.process_time``) per message a Trio/asyncio consumer woke up for; the
overhead of a mode is its CPU per message minus bare's. ``call_us`` is the round trip of one
:meth:`AsyncioThread.run` on a coroutine that returns at once: what each REST call adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import ccxt.pro  # type: ignore[import-untyped]
import trio

from tradeloop.exchanges import create_exchange
from tradeloop.exchanges.base import Topic, TopicKind
from tradeloop.exchanges.ccxt import CcxtExchange
from tradeloop.exchanges.ccxt._bridge import AsyncioThread
from tradeloop.models import Kline, Tick
from tradeloop.streams import StreamConfig, StreamManager

from .harness import ServerProcess, median

__all__ = ["run"]

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
_SIM = {"symbols": ["BTC-USDT", "ETH-USDT"], "push_interval": 0.001, "history_seconds": 3600}


class _Window:
    """Messages and CPU over a measured window that starts after a warm-up."""

    def __init__(self) -> None:
        self.messages = 0
        self.cpu_start = self.wall_start = 0.0

    def start(self) -> None:
        self.messages = 0
        self.cpu_start, self.wall_start = time.process_time(), time.perf_counter()

    def result(self) -> dict[str, float]:
        cpu, wall = time.process_time() - self.cpu_start, time.perf_counter() - self.wall_start
        return {
            "messages": self.messages,
            "msgs_per_s": self.messages / wall,
            "cpu_us_per_msg": cpu / max(self.messages, 1) * 1e6,
        }


def _ccxt_bingx(ws_url: str, rest_url: str) -> Any:
    exchange = ccxt.pro.bingx({"enableRateLimit": False})
    exchange.urls["api"]["ws"]["linear"] = ws_url
    for section in exchange.urls["api"]:
        if section != "ws":
            exchange.urls["api"][section] = rest_url + "/openApi"
    return exchange


async def _bare(ws_url: str, rest_url: str, warmup: float, seconds: float) -> dict[str, float]:
    exchange = _ccxt_bingx(ws_url, rest_url)
    window = _Window()

    async def watch(symbol: str) -> None:
        while True:
            await exchange.watch_ohlcv(symbol, "1m")
            window.messages += 1

    try:
        await exchange.load_markets()
        tasks = [asyncio.create_task(watch(symbol)) for symbol in SYMBOLS]
        await asyncio.sleep(warmup)
        window.start()
        await asyncio.sleep(seconds)
        result = window.result()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await exchange.close()
    return result


async def _adapter(ws_url: str, rest_url: str, warmup: float, seconds: float) -> dict[str, float]:
    exchange = create_exchange("ccxt:bingx", ws_url=ws_url, rest_url=rest_url, options={"enableRateLimit": False})
    assert isinstance(exchange, CcxtExchange)
    window = _Window()

    def deliver(item: list[Kline] | Tick) -> None:
        window.messages += 1

    async with exchange, anyio.create_task_group() as nursery:
        await exchange.check_symbol(None, SYMBOLS[0])  # type: ignore[arg-type]  # loads the markets; no httpx used
        for symbol in SYMBOLS:
            nursery.start_soon(exchange.watch, Topic(TopicKind.KLINE, symbol, "1m"), deliver)
        await anyio.sleep(warmup)
        window.start()
        await anyio.sleep(seconds)
        result = window.result()
        nursery.cancel_scope.cancel()
    return result


async def _streams(ws_url: str, rest_url: str, warmup: float, seconds: float) -> dict[str, float]:
    exchange = create_exchange("ccxt:bingx", ws_url=ws_url, rest_url=rest_url, options={"enableRateLimit": False})
    assert isinstance(exchange, CcxtExchange)
    window = _Window()
    async with exchange, StreamManager.open([exchange], StreamConfig()) as streams:
        channels = [streams.klines(exchange.name, symbol, "1m") for symbol in SYMBOLS]
        async with anyio.create_task_group() as nursery:

            async def drain(channel: Any) -> None:
                async for _ in channel:
                    pass

            for channel in channels:
                nursery.start_soon(drain, channel)
            await anyio.sleep(warmup)
            before = sum(topic.messages for topic in streams.health().topics)
            window.start()
            await anyio.sleep(seconds)
            window.messages = sum(topic.messages for topic in streams.health().topics) - before
            result = window.result()
            nursery.cancel_scope.cancel()
    return result


async def _call_cost(calls: int) -> float:
    loop = AsyncioThread("bench")

    async def nothing() -> None:
        return None

    try:
        await loop.run(nothing)
        started = time.perf_counter()
        for _ in range(calls):
            await loop.run(nothing)
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        await loop.aclose()


def run(quick: bool) -> dict[str, Any]:
    """Each mode ``rounds`` times, interleaved (load on a shared machine drifts); medians reported."""
    warmup, seconds, rounds, calls = (1.0, 2.0, 1, 2_000) if quick else (2.0, 5.0, 3, 20_000)
    with ServerProcess.running("benchmarks.simhost", json.dumps(_SIM)) as sim:
        ws_url, rest_url = sim.hello["ws_url"], sim.hello["rest_url"]
        modes: dict[str, Callable[[], dict[str, float]]] = {
            "bare": lambda: asyncio.run(_bare(ws_url, rest_url, warmup, seconds)),
            "adapter": lambda: trio.run(_adapter, ws_url, rest_url, warmup, seconds),
            "streams": lambda: trio.run(_streams, ws_url, rest_url, warmup, seconds),
            "adapter/asyncio": lambda: asyncio.run(_adapter(ws_url, rest_url, warmup, seconds)),
            "streams/asyncio": lambda: asyncio.run(_streams(ws_url, rest_url, warmup, seconds)),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
        for _ in range(rounds):
            for name, measure in modes.items():
                runs[name].append(measure())
    results = {name: {key: median([r[key] for r in rows]) for key in rows[0]} for name, rows in runs.items()}
    bare = results["bare"]["cpu_us_per_msg"]
    for result in results.values():
        result["overhead_us_per_msg"] = result["cpu_us_per_msg"] - bare
    return {"seconds": seconds, "rounds": rounds, "modes": results, "call_us": trio.run(_call_cost, calls)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ccxt_adapter", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one 2 s run per mode instead of three of 5 s")
    result = run(parser.parse_args().quick)
    print(json.dumps(result, indent=1))
    print(f"{'mode':15} {'msgs/s':>9} {'CPU us/msg':>11} {'overhead us/msg':>16}")
    for name, row in result["modes"].items():
        print(f"{name:15} {row['msgs_per_s']:9.0f} {row['cpu_us_per_msg']:11.1f} {row['overhead_us_per_msg']:16.1f}")
    print(f"one AsyncioThread.run round trip: {result['call_us']:.1f} us")


if __name__ == "__main__":
    main()
