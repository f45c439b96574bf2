"""Market data through Redis streams beside the in-process path.

``python -m benchmarks.bench_redis [--quick]`` starts its own ``redis-server`` on a free loopback
port (no persistence) and measures, for closed candles and for ticks:

- in-process: a :class:`~tradeloop.streams.fanout.FanOut` (what a StreamManager hands the
  engine) straight to a subscriber;
- through Redis: the same items handed to a :class:`~tradeloop.distributed.publisher.Publisher`
  (XADDs pipelined, explicit IDs for candles, MAXLEN ~ trimming), read by a
  :class:`~tradeloop.distributed.consumer.RedisMarketData` (XREADGROUP for candles, acknowledged
  as processed; XREAD for ticks, server-side BLOCK waits) into the subscriber.

Throughput is items over the time from the first hand-over to the last item received, with the
producer as fast as the path accepts. Latency is measured separately at a paced rate (one item
per millisecond, well under either path's capacity): the time from the hand-over to the
subscriber holding the item, so the Redis path's *added* latency is its p99 minus the in-process
p99. CPU is this process's CPU time per item over the same span (redis-server's is not counted):
steadier than items/s on a shared machine, the more so as a median of ``--repeat`` runs.
``--backend asyncio`` runs the same on asyncio (Trio is the default). One process, 2 cores shared
with whatever else runs: treat the numbers as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from tradeloop.distributed import open_redis
from tradeloop.distributed.consumer import RedisMarketData, RedisSourceSettings
from tradeloop.distributed.publisher import Publisher, PublishSettings, PublishTopics
from tradeloop.models import Kline, Tick
from tradeloop.streams import StreamHealth, Subscription
from tradeloop.streams.fanout import FanOut

SYMBOL = "BTC/USDT:USDT"
START_MS = 1_760_000_040_000
SIZES = {
    "quick": {"candles": 3000, "ticks": 10000, "paced": 1000},
    "full": {"candles": 30000, "ticks": 100000, "paced": 5000},
}


def kline(index: int) -> Kline:
    price = Decimal(60000 + index % 100)
    return Kline("bingx", SYMBOL, "1m", START_MS + index * 60_000, price, price, price, price, Decimal(1), True)


def tick(index: int) -> Tick:
    return Tick("bingx", SYMBOL, START_MS + index, Decimal(60000 + index % 100))


class MemorySource:
    """A MarketData whose items the benchmark pushes by hand: the in-process path."""

    def __init__(self) -> None:
        self.candles: FanOut[Kline] = FanOut()
        self.ticks_out: FanOut[Tick] = FanOut()

    def klines(self, exchange: str, symbol: str, timeframe: str, **options: Any) -> Subscription[Kline]:
        return self.candles.subscribe("block", 1024)

    def ticks(self, exchange: str, symbol: str, **options: Any) -> Subscription[Tick]:
        return self.ticks_out.subscribe("block", 1024)

    async def fetch_klines(self, exchange: str, symbol: str, timeframe: str, *, limit: int = 100) -> list[Kline]:
        return []

    def health(self) -> StreamHealth:
        return StreamHealth((), ())


@asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (make test installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as data_dir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = await anyio.open_process([*args, "--dir", data_dir], stdout=subprocess.DEVNULL)
        try:
            for _ in range(500):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    await anyio.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            await process.wait()


async def measure(
    items: list[Any],
    fanout: FanOut[Any],
    receive: Subscription[Any],
    key: Callable[[Any], int],
    *,
    pace: float | None,
    done: Callable[[Any], None] = lambda item: None,
) -> dict[str, float]:
    """Publish ``items`` (as fast as accepted, or one per ``pace`` s) and time their arrival."""
    count = len(items)
    sent: dict[int, int] = {}
    latencies: list[int] = []
    first = first_cpu = 0

    async def produce() -> None:
        nonlocal first, first_cpu
        first = time.perf_counter_ns()
        first_cpu = time.process_time_ns()
        for item in items:
            sent[key(item)] = time.perf_counter_ns()
            await fanout.publish_when_room(item)
            if pace:
                await anyio.sleep(pace)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(produce)
        received = 0
        async for item in receive:
            latencies.append(time.perf_counter_ns() - sent[key(item)])
            done(item)
            received += 1
            if received == count:
                break
        last = time.perf_counter_ns()
        last_cpu = time.process_time_ns()
    latencies.sort()
    return {
        "items_per_s": count / ((last - first) / 1e9),
        "cpu_us_per_item": (last_cpu - first_cpu) / count / 1e3,
        "p50_ms": latencies[len(latencies) // 2] / 1e6,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6,
    }


async def run(size: str, repeat: int = 1) -> dict[str, Any]:
    """Every path ``repeat`` times; each figure is the median of its runs."""
    sizes = SIZES[size]
    runs: dict[str, list[dict[str, float]]] = {}
    async with redis_server() as url:
        for kind, make, count in (("candles", kline, sizes["candles"]), ("ticks", tick, sizes["ticks"])):
            offsets = {"in_process": 0, "redis": 0}
            for _ in range(repeat):
                for path in ("in_process", "redis"):
                    for mode, n, pace in (("burst", count, None), ("paced", sizes["paced"], 0.001)):
                        result = await one(url, kind, make, path, n, offsets[path], pace)
                        runs.setdefault(f"{kind}_{path}_{mode}", []).append(result)
                        offsets[path] += n  # the path's next run continues its stream: no gap
    results: dict[str, Any] = {"size": size, "repeat": repeat}
    for name, measured in runs.items():
        results[name] = {figure: statistics.median(m[figure] for m in measured) for figure in measured[0]}
    return results


async def one(
    url: str, kind: str, make: Callable[[int], Any], path: str, count: int, offset: int, pace: float | None
) -> dict[str, float]:
    source = MemorySource()
    fanout: FanOut[Any] = source.candles if kind == "candles" else source.ticks_out
    items = [make(offset + index) for index in range(count)]
    key: Callable[[Any], int] = (lambda k: k.open_time) if kind == "candles" else (lambda t: t.time)
    if path == "in_process":
        subscription = source.klines("bingx", SYMBOL, "1m") if kind == "candles" else source.ticks("bingx", SYMBOL)
        async with subscription:
            return await measure(items, fanout, subscription, key, pace=pace)
    settings = RedisSourceSettings(url, consumer="bench", group=f"bench-{offset}", read_wait=1.0, batch=500)
    topics = PublishTopics("bingx", [SYMBOL], ["1m"] if kind == "candles" else [], ticks=kind == "ticks")
    async with (
        open_redis(url) as redis,
        RedisMarketData.open(settings) as consumer,
        anyio.create_task_group() as tasks,
    ):
        if kind == "candles":
            subscription = consumer.klines("bingx", SYMBOL, "1m", buffer=1024)
            await wait_until_owned(consumer)
        else:
            subscription = consumer.ticks("bingx", SYMBOL, policy="block", buffer=1024)
            await anyio.sleep(0.2)  # the tick reader starts from the stream's newest entry
        publisher = Publisher(redis, source, PublishSettings(backfill=1, health_interval=60))
        await tasks.start(publisher.run, [topics])
        done = consumer.mark_processed if kind == "candles" else (lambda item: None)
        async with subscription:
            result = await measure(items, fanout, subscription, key, pace=pace, done=done)
        tasks.cancel_scope.cancel()
    return result


async def wait_until_owned(consumer: RedisMarketData) -> None:
    with anyio.fail_after(10):
        while not any(topic.state == "owner" for topic in consumer.health().topics):  # noqa: ASYNC110 (no event)
            await anyio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio", help="the event loop (default trio)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every path N times and report medians (steadier side by side)"
    )
    args = parser.parse_args()
    results = anyio.run(run, "quick" if args.quick else "full", args.repeat, backend=args.backend)
    print(f"{'path (' + args.backend + ')':34} {'items/s':>10} {'CPU µs':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, value in results.items():
        if isinstance(value, dict):
            print(
                f"{name:34} {value['items_per_s']:>10,.0f} {value['cpu_us_per_item']:>8.1f}"
                f" {value['p50_ms']:>8.3f} {value['p99_ms']:>8.3f}"
            )
    for kind in ("candles", "ticks"):
        added = results[f"{kind}_redis_paced"]["p99_ms"] - results[f"{kind}_in_process_paced"]["p99_ms"]
        print(f"{kind}: p99 latency added by Redis at a paced 1 item/ms: {added:.3f} ms")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
