"""Burst throughput: N pushes of one topic as fast as the socket carries them, three consumers.

tradeloop delivers every push to each of three subscribers of the topic (strategy, risk,
portfolio); ccxt.pro runs three ``watch_ohlcv`` loops on the symbol. The rate is N divided by the
time from the server's first send to the moment the last consumer holds push N, on one clock.

tradeloop runs twice: on its default transport (wsproto driven on the Trio stream) and on the
reference one (trio-websocket). Two receive paths without any stream layer run on the same pushes as references (see
:mod:`benchmarks.client_transport`): trio-websocket, which tradeloop uses today, and wsproto
driven directly on a Trio stream. The bare-Trio floor (:mod:`benchmarks.client_floor`) reads the
same pushes with one task and nothing but frame parsing, gunzip and JSON: no client can beat it.
Every baseline revision's tradeloop runs beside today's. With ``profile_pushes`` set, one more
tradeloop run under cProfile says where its time goes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .harness import FeedProcess, ServerProcess, median, read_client_result, run_client, start_client, stop_client
from .modes import Mode
from .variants import (
    BARE_TRIO,
    CCXT,
    TRADELOOP,
    TRADELOOP_ASYNCIO,
    TRADELOOP_TRIO_WEBSOCKET,
    TRADELOOP_UVLOOP,
    TRIO_WEBSOCKET,
    WSPROTO,
    Variant,
)

__all__ = ["CONSUMERS", "SYMBOL", "VARIANTS", "measure", "run", "summary"]

VARIANTS = (
    TRADELOOP, TRADELOOP_ASYNCIO, TRADELOOP_UVLOOP, CCXT, TRADELOOP_TRIO_WEBSOCKET, TRIO_WEBSOCKET, WSPROTO, BARE_TRIO
)
SYMBOL = "BTC-USDT"
CONSUMERS = 3


def measure(
    feed: FeedProcess, variant: Variant, pushes: int, *, profile: bool = False, servers: Mapping[str, str] = {}
) -> dict[str, Any]:
    """One burst of ``pushes`` to ``variant``; ``servers``: more URLs for its spec (Binance's ``rest_url``)."""
    spec = {
        **servers,
        "run": "burst",
        "url": feed.url,
        "symbols": [SYMBOL],
        "consumers": CONSUMERS if variant.fan_out else 1,
        "total": pushes,
        "subscribe_rate": 10.0,
        "timeout": 300.0,
        "profile": profile,
    }
    command = {"cmd": "burst", "symbol_id": SYMBOL, "sockets": 1}
    served, measured = run_client(feed, variant, spec, command)
    seconds = (measured["last_ns"] - served["start_ns"]) / 1e9
    result = {
        "msgs_per_s": pushes / seconds,
        "cpu_us_per_msg": measured["cpu_s"] / pushes * 1e6,
        "seconds": seconds,
        "server_send_seconds": (served["end_ns"] - served["start_ns"]) / 1e9,
        "consumer_items": measured["items"],
        "consumer_wakeups": measured["wakeups"],
    }
    if profile:
        result["profile"] = measured["profile"]
    return result


def _simulator_burst(pushes: int) -> dict[str, Any]:
    """What ``sim.burst`` delivers to the fastest receive path: why the feed server generates the load.

    The simulator encodes the burst when asked (inside the timed span, as its API does) and sends
    through trio-websocket, one ``send_message`` per push.
    """
    spec = {
        "run": "burst",
        "symbols": [SYMBOL],
        "consumers": 1,
        "total": pushes,
        "subscribe_rate": 10.0,
        "timeout": 300.0,
    }
    with ServerProcess.running("benchmarks.simhost", json.dumps({"symbols": [SYMBOL]})) as sim:
        spec["url"] = sim.hello["ws_url"]
        client = start_client(WSPROTO, spec)
        try:
            served = sim.command(cmd="burst", symbol_id=SYMBOL, count=pushes, subscriptions=1, timeout=300)
            measured = read_client_result(client, WSPROTO, 300.0)
        finally:
            stop_client(client)
    return {"msgs_per_s": pushes / ((measured["last_ns"] - served["start_ns"]) / 1e9), "pushes": pushes}


def summary(results: list[dict[str, Any]]) -> dict[str, float]:
    """The medians of a variant's runs."""
    return {
        "msgs_per_s": median([r["msgs_per_s"] for r in results]),
        "cpu_us_per_msg": median([r["cpu_us_per_msg"] for r in results]),
    }


def run(mode: Mode, floor_msgs_per_s: float, baselines: Sequence[Variant] = ()) -> dict[str, Any]:
    pushes = mode.burst_pushes
    variants = (*VARIANTS, *baselines)
    with FeedProcess.start() as feed:
        encode = feed.command(cmd="prepare_burst", symbol_id=SYMBOL, count=pushes, timeout=300)
        runs: dict[str, list[dict[str, Any]]] = {variant.key: [] for variant in variants}
        for _ in range(mode.runs):
            for variant in variants:
                runs[variant.key].append(measure(feed, variant, pushes))
        profile = None
        if mode.profile_pushes:
            feed.command(cmd="prepare_burst", symbol_id=SYMBOL, count=mode.profile_pushes, timeout=300)
            profile = measure(feed, TRADELOOP, mode.profile_pushes, profile=True)
    simulator = _simulator_burst(min(pushes, 50_000))
    medians = {key: summary(results) for key, results in runs.items()}
    tradeloop, ccxt = medians[TRADELOOP.key]["msgs_per_s"], medians[CCXT.key]["msgs_per_s"]
    return {
        "pushes": pushes,
        "consumers": CONSUMERS,
        "labels": {variant.key: variant.label for variant in variants},
        "runs": runs,
        "summary": medians,
        "floor_msgs_per_s": floor_msgs_per_s,
        "ratio_tradeloop_to_ccxt": tradeloop / ccxt,
        "ratio_tradeloop_to_floor": tradeloop / floor_msgs_per_s,
        "ratio_ccxt_to_floor": ccxt / floor_msgs_per_s,
        "per_run_ratio_tradeloop_to_ccxt": [
            t["msgs_per_s"] / c["msgs_per_s"] for t, c in zip(runs[TRADELOOP.key], runs[CCXT.key], strict=True)
        ],
        "server_encode_seconds": encode["encode_s"],
        "profile": profile,
        "simulator_burst_to_wsproto": simulator,
    }
