"""Live rates: pushes paced at a few thousand msg/s over 100 topics, one consumer each, in two feeds.

The *batched* feed writes the pushes of each 1 ms tick in one ``send_all`` (at 1,000 / 2,000 /
10,000 msg/s); the *one frame per packet* feed writes every push on its own at its own time, one
TCP segment each, as exchanges often send them (at 2,000 and 10,000 msg/s: 500 and 100 µs apart).
The clients of each feed run side by side, in turn, in the same run; the per-packet feed also runs
the bare-Trio floor (:mod:`benchmarks.client_floor`), alone and handing each push to a consumer
task (the least any client pays whose consumers run in tasks of their own), and both feeds run
every baseline revision's tradeloop. The per-packet feed also runs tradeloop and ccxt.pro on
asyncio+uvloop, and the uvloop floor with a consumer task (:mod:`benchmarks.client_floor_asyncio`):
``cpu_to_same_loop`` compares a client with ccxt.pro on the same event loop (uvloop with uvloop,
Trio and plain asyncio with ccxt.pro on plain asyncio, as its docs run it).

Two numbers per run. CPU per message: the client process's CPU time from its first push to its
last, over the pushes in between. Latency: each push's server send time to the moment a consumer
holds it (``time.monotonic_ns()`` in both processes: one system-wide clock). ccxt.pro consumers
see only the newest update of a candle when several arrived between two wake-ups, so its
latencies are of the pushes a consumer saw (``observed`` gives the share). Pushes per wake-up of a
consumer say how the feed arrived: the bare-Trio floor's one task wakes once per socket read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .frames import symbol_ids
from .harness import FeedProcess, median, percentiles, run_client
from .modes import Mode
from .variants import (
    BARE_TRIO,
    BARE_TRIO_CONSUMER,
    BARE_UVLOOP_CONSUMER,
    CCXT,
    CCXT_UVLOOP,
    TRADELOOP,
    TRADELOOP_TRIO_WEBSOCKET,
    TRADELOOP_UVLOOP,
    Variant,
)

__all__ = ["FEEDS", "paced_rates", "run"]

BATCHED = (TRADELOOP, CCXT, TRADELOOP_TRIO_WEBSOCKET)
PER_PACKET = (TRADELOOP, TRADELOOP_UVLOOP, CCXT, CCXT_UVLOOP, BARE_TRIO, BARE_TRIO_CONSUMER, BARE_UVLOOP_CONSUMER)
FEEDS = {"batched": "many frames per send_all", "per_packet": "one frame per packet"}
"""The feeds in the order they run, and how the tables name them."""


def _one(feed: FeedProcess, variant: Variant, symbols: list[str], pushes: int, seconds: float,
         per_packet: bool, servers: Mapping[str, str]) -> dict[str, Any]:
    spec = {
        **servers,
        "run": "paced",
        "url": feed.url,
        "symbols": symbols,
        "consumers": 1,
        "total": pushes,
        "subscribe_rate": 1000.0,
        "timeout": seconds + 60.0,
    }
    served, measured = run_client(feed, variant, spec, {"cmd": "paced", "sockets": 1, "per_packet": per_packet})
    send_ns = served["send_ns"]
    latencies_us = [(r - s) / 1e3 for r, s in zip(measured["recv_ns"], send_ns, strict=True) if r]
    return {
        "cpu_us_per_msg": measured["cpu_s"] / (pushes - 1) * 1e6,
        "latency_us": percentiles(latencies_us),
        "observed": measured["observed"] / pushes,
        "pushes_per_wakeup": sum(measured["items"]) / max(1, sum(measured["wakeups"])),
        "achieved_rate": pushes / ((served["end_ns"] - served["start_ns"]) / 1e9),
        "behind_at_end_ms": (measured["last_ns"] - served["end_ns"]) / 1e6,
    }


def _summary(results: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "cpu_us_per_msg": median([r["cpu_us_per_msg"] for r in results]),
        **{f"latency_{key}_us": median([r["latency_us"][key] for r in results]) for key in ("p50", "p99", "max")},
        "observed": median([r["observed"] for r in results]),
        "pushes_per_wakeup": median([r["pushes_per_wakeup"] for r in results]),
    }


def paced_rates(feed: FeedProcess, mode: Mode, symbols: list[str], rates: Sequence[int], variants: Sequence[Variant],
                per_packet: bool, *, reference: Variant = CCXT, servers: Mapping[str, str] = {}) -> dict[str, Any]:
    """Every variant at every rate, ``mode.runs`` times, medians; CPU also as a ratio to ``reference``'s.

    ``servers``: more URLs for the clients' specs (Binance's ``rest_url``).
    """
    by_rate: dict[str, Any] = {}
    for rate in rates:
        pushes = int(rate * mode.live_seconds)
        feed.command(cmd="prepare_paced", topics=symbols, rate=rate, count=pushes)
        runs: dict[str, list[dict[str, Any]]] = {variant.key: [] for variant in variants}
        for _ in range(mode.runs):
            for variant in variants:
                runs[variant.key].append(_one(feed, variant, symbols, pushes, mode.live_seconds, per_packet, servers))
        summary = {key: _summary(results) for key, results in runs.items()}
        reference_cpu = summary[reference.key]["cpu_us_per_msg"]
        uvloop_cpu = next((summary[variant.key]["cpu_us_per_msg"] for variant in variants
                           if variant.runner == reference.runner and variant.on_uvloop), reference_cpu)
        for variant in variants:
            values = summary[variant.key]
            values["cpu_to_ccxt"] = values["cpu_us_per_msg"] / reference_cpu
            values["cpu_to_same_loop"] = values["cpu_us_per_msg"] / (uvloop_cpu if variant.on_uvloop else reference_cpu)
        by_rate[str(rate)] = {"pushes": pushes, "runs": runs, "summary": summary}
    return by_rate


def run(mode: Mode, baselines: Sequence[Variant] = ()) -> dict[str, Any]:
    symbols = symbol_ids(mode.live_topics)
    lineups = {"batched": (*BATCHED, *baselines), "per_packet": (*PER_PACKET, *baselines)}
    rates = {"batched": mode.live_rates, "per_packet": mode.packet_rates}
    with FeedProcess.start() as feed:
        feeds = {
            name: paced_rates(feed, mode, symbols, rates[name], lineups[name], per_packet=name == "per_packet")
            for name in FEEDS
        }
    return {
        "topics": mode.live_topics,
        "seconds": mode.live_seconds,
        "labels": {variant.key: variant.label for lineup in lineups.values() for variant in lineup},
        "feeds": feeds,
    }
