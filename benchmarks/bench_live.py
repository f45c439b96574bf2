"""Live rates: pushes paced at 1,000 / 2,000 / 10,000 msg/s over 100 topics, one consumer each.

Two numbers per run. CPU per message: the client process's CPU time from its first push to its
last, over the pushes in between. Latency: each push's server send time to the moment a consumer
holds it (``time.monotonic_ns()`` in both processes: one system-wide clock). ccxt.pro consumers
see only the newest update of a candle when several arrived between two wake-ups, so its
latencies are of the pushes a consumer saw (``observed`` gives the share).
"""

from __future__ import annotations

from typing import Any

from .bench_burst import CLIENTS
from .frames import symbol_ids
from .harness import FeedProcess, median, percentiles, run_client
from .modes import Mode

__all__ = ["run"]


def _one(feed: FeedProcess, client: str, symbols: list[str], pushes: int, seconds: float) -> dict[str, Any]:
    spec = {
        "client": client,
        "run": "paced",
        "url": feed.url,
        "symbols": symbols,
        "consumers": 1,
        "total": pushes,
        "subscribe_rate": 1000.0,
        "timeout": seconds + 60.0,
    }
    served, measured = run_client(feed, spec, {"cmd": "paced", "sockets": 1})
    send_ns = served["send_ns"]
    latencies_us = [(r - s) / 1e3 for r, s in zip(measured["recv_ns"], send_ns, strict=True) if r]
    return {
        "cpu_us_per_msg": measured["cpu_s"] / (pushes - 1) * 1e6,
        "latency_us": percentiles(latencies_us),
        "observed": measured["observed"] / pushes,
        "achieved_rate": pushes / ((served["end_ns"] - served["start_ns"]) / 1e9),
        "behind_at_end_ms": (measured["last_ns"] - served["end_ns"]) / 1e6,
    }


def run(mode: Mode) -> dict[str, Any]:
    symbols = symbol_ids(mode.live_topics)
    rates: dict[str, Any] = {}
    with FeedProcess.start() as feed:
        for rate in mode.live_rates:
            pushes = int(rate * mode.live_seconds)
            feed.command(cmd="prepare_paced", topics=symbols, rate=rate, count=pushes)
            runs: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
            for _ in range(mode.runs):
                for client in CLIENTS:
                    runs[client].append(_one(feed, client, symbols, pushes, mode.live_seconds))
            summary = {
                client: {
                    "cpu_us_per_msg": median([r["cpu_us_per_msg"] for r in results]),
                    **{
                        f"latency_{key}_us": median([r["latency_us"][key] for r in results])
                        for key in ("p50", "p99", "max")
                    },
                    "observed": median([r["observed"] for r in results]),
                }
                for client, results in runs.items()
            }
            rates[str(rate)] = {
                "pushes": pushes,
                "runs": runs,
                "summary": summary,
                "ratio_cpu_tradeloop_to_ccxt": (
                    summary["tradeloop"]["cpu_us_per_msg"] / summary["ccxt"]["cpu_us_per_msg"]
                ),
            }
    return {"topics": mode.live_topics, "seconds": mode.live_seconds, "rates": rates}
