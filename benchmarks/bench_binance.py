"""Binance side by side: tradeloop's native client, ccxt.pro's ``binance`` and cryptofeed's ``BinanceFutures``.

``python -m benchmarks.bench_binance [--quick]`` (also a step of ``python -m benchmarks``). The
three clients read USDⓈ-M ``@kline_1m`` pushes from the feed server in its Binance dialect
(:mod:`benchmarks.feed`: pushes prepared before the clock starts, so the server is never the
bottleneck) and take what Binance's clients fetch over REST (``exchangeInfo``: tradeloop checks
its symbols against it, ccxt.pro loads its markets, cryptofeed its symbol map) from the
simulator's Binance dialect in a process of its own. Each client runs in a process of its own,
in turn, in the same run. cryptofeed runs on uvloop, as its default configuration does; ccxt.pro
on asyncio, as its own; tradeloop on Trio (its default, the one the ratios are of) and on
asyncio+uvloop (a row of its own, for the comparison on one event loop):

- burst: ``burst_pushes`` of one topic as fast as the socket carries them, three consumers (three
  ``watch_ohlcv`` loops for ccxt.pro, three candle callbacks for cryptofeed), as
  :mod:`benchmarks.bench_burst` measures BingX;
- live rates: 2,000 and 10,000 msg/s over ``live_topics`` topics, one frame per packet, one
  consumer each: CPU per message and latency, as :mod:`benchmarks.bench_live` measures BingX,
  with the bare floors of :data:`FLOORS` beside the clients.

Ratios are tradeloop's over each peer's (msgs/s in the burst; CPU per message at live rates,
where below 1 is better).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import bench_burst
from .bench_live import paced_rates
from .frames import symbol_ids
from .harness import FeedProcess, ServerProcess, machine
from .modes import FULL, QUICK, Mode
from .report import binance_markdown
from .variants import (
    BINANCE_FLOOR_TRIO_CONSUMER,
    BINANCE_FLOOR_UVLOOP,
    BINANCE_FLOOR_UVLOOP_CONSUMER,
    CCXT_BINANCE,
    CRYPTOFEED,
    TRADELOOP_BINANCE,
    TRADELOOP_BINANCE_UVLOOP,
)

__all__ = ["FLOORS", "LINEUP", "PEERS", "run"]

LINEUP = (TRADELOOP_BINANCE, TRADELOOP_BINANCE_UVLOOP, CCXT_BINANCE, CRYPTOFEED)
PEERS = (CCXT_BINANCE, CRYPTOFEED)
FLOORS = (BINANCE_FLOOR_TRIO_CONSUMER, BINANCE_FLOOR_UVLOOP, BINANCE_FLOOR_UVLOOP_CONSUMER)
"""Run at live rates beside the lineup: the least a client pays with its consumers in tasks (on
Trio and on uvloop), and with all its work in the socket's callback, as cryptofeed's design has it
(:mod:`benchmarks.client_floor`, :mod:`benchmarks.client_floor_asyncio`)."""


def _simulator(symbols: list[str]) -> dict[str, Any]:
    """The simulator's settings: it serves REST only, so its market barely moves and pushes nothing asked."""
    return {"exchange": "binance", "symbols": symbols, "step_seconds": 60, "push_interval": 3600,
            "history_seconds": 0}


def _burst(feed: FeedProcess, mode: Mode, servers: dict[str, str]) -> dict[str, Any]:
    pushes = mode.burst_pushes
    feed.command(cmd="prepare_burst", symbol_id=bench_burst.SYMBOL, count=pushes, timeout=300)
    runs: dict[str, list[dict[str, Any]]] = {variant.key: [] for variant in LINEUP}
    for _ in range(mode.runs):
        for variant in LINEUP:
            runs[variant.key].append(bench_burst.measure(feed, variant, pushes, servers=servers))
    summary = {key: bench_burst.summary(results) for key, results in runs.items()}
    tradeloop = summary[TRADELOOP_BINANCE.key]["msgs_per_s"]
    return {
        "pushes": pushes,
        "runs": runs,
        "summary": summary,
        "ratio_tradeloop_to": {peer.key: tradeloop / summary[peer.key]["msgs_per_s"] for peer in PEERS},
    }


def _live(feed: FeedProcess, mode: Mode, symbols: list[str], servers: dict[str, str]) -> dict[str, Any]:
    by_rate = paced_rates(feed, mode, symbols, mode.packet_rates, (*LINEUP, *FLOORS), per_packet=True,
                          reference=CCXT_BINANCE, servers=servers)
    for data in by_rate.values():
        summary = data["summary"]
        tradeloop = summary[TRADELOOP_BINANCE.key]["cpu_us_per_msg"]
        data["cpu_ratio_tradeloop_to"] = {peer.key: tradeloop / summary[peer.key]["cpu_us_per_msg"] for peer in PEERS}
    return by_rate


def run(mode: Mode) -> dict[str, Any]:
    symbols = symbol_ids(mode.live_topics)
    with (
        ServerProcess.running("benchmarks.simhost", json.dumps(_simulator(symbols))) as sim,
        FeedProcess.start("binance") as feed,
    ):
        servers = {"rest_url": sim.hello["rest_url"]}
        burst = _burst(feed, mode, servers)
        live = _live(feed, mode, symbols, servers)
    return {
        "labels": {variant.key: variant.label for variant in (*LINEUP, *FLOORS)},
        "consumers": bench_burst.CONSUMERS,
        "topics": mode.live_topics,
        "seconds": mode.live_seconds,
        "burst": burst,
        "live": live,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_binance", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    mode = QUICK if parser.parse_args().quick else FULL
    results = {"mode": mode.name, "runs": mode.runs, "machine": machine(), "binance": run(mode)}
    print(json.dumps(results, indent=1))
    print(binance_markdown(results))


if __name__ == "__main__":
    main()
