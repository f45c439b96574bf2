"""Scale and shutdown: 2,000 kline topics from the simulator, then one cancel.

The client runs with tradeloop's defaults for BingX: at most 200 topics per socket (so 10
sockets) and 10 subscription requests per second per socket. Measured: time from opening the
manager to the simulator acknowledging every subscription, resident memory, CPU while the
simulator pushes every topic once a second and while it only sends heartbeats, then the time from
cancelling the manager's scope to its return and the Trio tasks and TCP sockets left behind.
"""

from __future__ import annotations

import json
from typing import Any

from .frames import symbol_ids, unified
from .harness import ServerProcess, median
from .modes import Mode

__all__ = ["run"]


def _one(sim: ServerProcess, mode: Mode, topics: list[list[str]]) -> dict[str, Any]:
    config = {"max_topics_per_socket": mode.scale_topics_per_socket, "confirm_closed_candles": False}
    with ServerProcess.running("benchmarks.session") as client:
        opened = client.command(
            cmd="open", ws_url=sim.hello["ws_url"], rest_url=sim.hello["rest_url"], topics=topics, config=config
        )
        subscribed = sim.command(cmd="wait_subscriptions", count=len(topics), timeout=300)
        live = client.command(cmd="measure", seconds=mode.idle_seconds, timeout=60)
        sim.command(cmd="stall")
        client.command(cmd="measure", seconds=0.5, timeout=60)  # let pushes in flight drain
        idle = client.command(cmd="measure", seconds=mode.idle_seconds, timeout=60)
        sim.command(cmd="unstall")
        shutdown = client.command(cmd="shutdown", timeout=150)
    sim.command(cmd="wait_idle")
    return {
        "all_subscribed_s": (subscribed["at_ns"] - opened["start_ns"]) / 1e9,
        "rss_mb": idle["rss_bytes"] / 2**20,
        "live_cpu_percent": live["cpu_s"] / live["seconds"] * 100,
        "live_klines_per_s": live["delivered"] / live["seconds"],
        "idle_cpu_percent": idle["cpu_s"] / idle["seconds"] * 100,
        "connections": live["connections"],
        "shutdown_s": shutdown["seconds"],
        "tasks_left": shutdown["tasks_left"],
        "sockets_left": shutdown["sockets_left"],
    }


def run(mode: Mode) -> dict[str, Any]:
    ids = symbol_ids(mode.scale_topics)
    topics = [[symbol, "1m"] for symbol in unified(ids)]
    options = {"symbols": ids, "history_seconds": 120.0, "push_interval": 1.0, "ping_interval": 5.0}
    with ServerProcess.running("benchmarks.simhost", json.dumps(options)) as sim:
        runs = [_one(sim, mode, topics) for _ in range(mode.runs)]
        request_errors = sim.command(cmd="stats")["request_errors"]
    keys = ("all_subscribed_s", "rss_mb", "live_cpu_percent", "idle_cpu_percent", "shutdown_s")
    summary = {key: median([r[key] for r in runs]) for key in keys}
    summary["tasks_left"] = max(r["tasks_left"] for r in runs)
    summary["sockets_left"] = max(r["sockets_left"] for r in runs)
    return {
        "topics": mode.scale_topics,
        "topics_per_socket": mode.scale_topics_per_socket,
        "subscribe_rate_per_socket": 10.0,
        "server_request_errors": request_errors,
        "runs": runs,
        "summary": summary,
        "goals": {
            "memory_under_150_mb": summary["rss_mb"] < 150,
            "shutdown_under_1_s": summary["shutdown_s"] < 1,
            "nothing_left": summary["tasks_left"] == 0 and summary["sockets_left"] == 0,
        },
    }
