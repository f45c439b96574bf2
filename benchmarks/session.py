"""A tradeloop StreamManager in a process of its own, driven step by step by the orchestrator.

``python -m benchmarks.session`` answers JSON-line commands (:mod:`benchmarks.control`):

- ``open``: start a StreamManager with one draining consumer per topic;
- ``measure``: CPU time, resident memory and klines delivered over a window;
- ``recovery``: wait for live data after a server drop and say what arrived when;
- ``shutdown``: cancel the manager's scope and time it until it returns, then count the Trio
  tasks and TCP sockets it left behind (both must be zero).

The scale, shutdown and recovery benchmarks need the client in several states in turn while the
server (another process) changes underneath; one long-lived process with commands does that.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]
import trio

from tradeloop.exchanges.bingx import BingX
from tradeloop.models import Kline
from tradeloop.streams import StreamConfig, StreamManager, Subscription

from .control import Handler, serve_commands

__all__ = ["count_tasks", "main"]

_WAIT_LIMIT = 120.0


def count_tasks() -> int:
    """Every task in this Trio run, found by walking the tree from the root task."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None  # we are inside trio.run
    return walk(root)


def _sockets() -> int:
    return len(psutil.Process(os.getpid()).net_connections(kind="inet"))


@dataclass
class _TopicLog:
    delivered: int = 0
    events: list[tuple[int, int, bool]] = field(default_factory=list)
    """(receive ns, open time, closed) of every kline, when the session records events."""


class _Session:
    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._logs: list[_TopicLog] = []
        self._record = False
        self._baseline_tasks = 0
        self._baseline_sockets = 0
        self._streams: StreamManager | None = None
        self._changed = trio.Event()

    async def open(
        self, ws_url: str, rest_url: str, topics: list[list[str]], config: dict[str, Any], record: bool = False
    ) -> dict[str, Any]:
        self._baseline_tasks = count_tasks()
        self._baseline_sockets = _sockets()
        self._record = record
        exchange = BingX(ws_url=ws_url, spot_ws_url=ws_url, rest_url=rest_url)
        start_ns = time.monotonic_ns()
        await self._nursery.start(self._run, exchange, StreamConfig(**config), topics)
        return {"start_ns": start_ns, "subscribed_calls_ns": time.monotonic_ns()}

    async def _run(
        self,
        exchange: BingX,
        config: StreamConfig,
        topics: list[list[str]],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with self._scope:
            async with StreamManager.open({"bingx": exchange}, config) as streams, trio.open_nursery() as consumers:
                self._streams = streams
                for symbol, timeframe in topics:
                    log = _TopicLog()
                    self._logs.append(log)
                    consumers.start_soon(self._consume, streams.klines("bingx", symbol, timeframe), log)
                task_status.started()
                await trio.sleep_forever()
        self._done.set()

    async def _consume(self, subscription: Subscription[Kline], log: _TopicLog) -> None:
        async for kline in subscription:
            log.delivered += 1
            if self._record:
                log.events.append((time.monotonic_ns(), kline.open_time, kline.closed))
                self._changed.set()
                self._changed = trio.Event()

    async def measure(self, seconds: float) -> dict[str, Any]:
        process = psutil.Process(os.getpid())
        delivered = sum(log.delivered for log in self._logs)
        cpu = time.process_time()
        await trio.sleep(seconds)
        return {
            "cpu_s": time.process_time() - cpu,
            "seconds": seconds,
            "delivered": sum(log.delivered for log in self._logs) - delivered,
            "rss_bytes": process.memory_info().rss,
            "connections": self._connection_summary(),
        }

    def _connection_summary(self) -> dict[str, Any]:
        assert self._streams is not None
        health = self._streams.health()
        return {
            "sockets": len(health.connections),
            "max_topics_per_socket": max((c.topics for c in health.connections), default=0),
            "states": sorted({c.state for c in health.connections}),
            "reconnects": health.total_reconnects,
            "parse_errors": health.total_parse_errors,
            "backfilled": sum(t.backfilled_candles for t in health.topics),
        }

    async def recovery(self, drop_ns: int) -> dict[str, Any]:
        """Wait until every topic has a live update received after ``drop_ns``; what came when."""
        with trio.fail_after(_WAIT_LIMIT):
            while not all(_live_after(log, drop_ns) for log in self._logs):
                await self._changed.wait()
        return {"topics": [_analyse(log, drop_ns) for log in self._logs], "connections": self._connection_summary()}

    async def shutdown(self) -> dict[str, Any]:
        started = time.perf_counter()
        self._scope.cancel()
        with trio.fail_after(_WAIT_LIMIT):
            await self._done.wait()
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "tasks_left": count_tasks() - self._baseline_tasks,
            "sockets_left": _sockets() - self._baseline_sockets,
        }


def _live_after(log: _TopicLog, drop_ns: int) -> bool:
    return any(t >= drop_ns and not closed for t, _, closed in log.events)


def _analyse(log: _TopicLog, drop_ns: int) -> dict[str, Any]:
    """Times (ns) of the first live update after the drop and of the last candle backfilled before it."""
    after = [e for e in log.events if e[0] >= drop_ns]
    live_ns, live_open, _ = next(e for e in after if not e[2])
    backfilled = [e for e in after if e[2] and e[1] < live_open]
    closed_opens = [open_time for _, open_time, closed in log.events if closed]
    steps = {b - a for a, b in itertools.pairwise(closed_opens)}
    return {
        "live_ns": live_ns,
        "backfill_done_ns": backfilled[-1][0] if backfilled else None,
        "closed_after_drop": len(backfilled),
        "closed_total": len(closed_opens),
        "candle_steps_ms": sorted(steps),
    }


async def _main() -> None:
    async with trio.open_nursery() as nursery:
        session = _Session(nursery)
        handlers: dict[str, Handler] = {
            "open": session.open,
            "measure": session.measure,
            "recovery": session.recovery,
            "shutdown": session.shutdown,
        }
        await serve_commands({"pid": os.getpid()}, handlers)
        nursery.cancel_scope.cancel()


def main() -> None:
    # tradeloop logs each dropped socket as a warning; the recovery benchmark drops them on purpose.
    logging.basicConfig(level=logging.ERROR)
    trio.run(_main)


if __name__ == "__main__":
    main()
