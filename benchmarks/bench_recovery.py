"""Recovery: the feed goes silent for a few candles, then the server drops every socket.

The simulator runs 60 times faster than the wall clock (a one-minute candle per real second), so
an outage that costs real candles takes seconds. tradeloop must reconnect, resubscribe, fetch the
missed candles over REST and deliver them, closed and in order, before live updates continue.
Measured from the drop, on the shared clock: when the last missed candle was delivered, and when
live data flowed again. The client's reconnect backoff base is 0.25 s (full jitter); the default
is 5 s, which would only add a random wait.
"""

from __future__ import annotations

import json
from typing import Any

from .harness import ServerProcess, median
from .modes import Mode

__all__ = ["run"]

SPEED = 60.0
_SYMBOLS = ["BTC-USDT", "ETH-USDT"]
_CONFIG = {"reconnect_delay": 0.25, "reconnect_delay_max": 1.0}


def _one(sim: ServerProcess, mode: Mode) -> dict[str, Any]:
    topics = [[f"{s.replace('-', '/')}:USDT", "1m"] for s in _SYMBOLS]
    with ServerProcess.running("benchmarks.session") as client:
        client.command(
            cmd="open",
            ws_url=sim.hello["ws_url"],
            rest_url=sim.hello["rest_url"],
            topics=topics,
            config=_CONFIG,
            record=True,
        )
        sim.command(cmd="wait_subscriptions", count=len(topics))
        client.command(cmd="measure", seconds=2.5)  # a few candles close normally first
        outage = sim.command(cmd="outage", stall_seconds=mode.recovery_candles_missed * 60 / SPEED)
        recovered = client.command(cmd="recovery", drop_ns=outage["drop_ns"])
        client.command(cmd="shutdown")
    sim.command(cmd="wait_idle")
    drop_ns = outage["drop_ns"]
    topics_seen = recovered["topics"]
    return {
        "live_again_s": max(t["live_ns"] - drop_ns for t in topics_seen) / 1e9,
        "backfilled_s": max((t["backfill_done_ns"] or drop_ns) - drop_ns for t in topics_seen) / 1e9,
        "closed_delivered_after_drop": [t["closed_after_drop"] for t in topics_seen],
        "candle_steps_ms": sorted({s for t in topics_seen for s in t["candle_steps_ms"]}),
        "reconnects": recovered["connections"]["reconnects"],
        "backfilled_by_rest": recovered["connections"]["backfilled"],
    }


def run(mode: Mode) -> dict[str, Any]:
    sim_seconds = 60 / SPEED
    options = {
        "symbols": _SYMBOLS,
        "speed": SPEED,
        "push_interval": 6.0,
        "ping_interval": 5.0 * SPEED,
        "pong_timeout": 60.0 * SPEED,
        "send_timeout": 10.0 * SPEED,
    }
    with ServerProcess.running("benchmarks.simhost", json.dumps(options)) as sim:
        runs = [_one(sim, mode) for _ in range(mode.runs)]
    return {
        "speed": SPEED,
        "real_seconds_per_candle": sim_seconds,
        "candles_missed": mode.recovery_candles_missed,
        "client_config": _CONFIG,
        "runs": runs,
        "summary": {
            "live_again_s": median([r["live_again_s"] for r in runs]),
            "backfilled_s": median([r["backfilled_s"] for r in runs]),
        },
    }
