"""The embedded BingX simulator in a process of its own: ``python -m benchmarks.simhost '<json>'``.

The argument holds the :class:`~tradeloop.sim.SimConfig` fields and ``speed``: the simulator runs
on a Trio clock that goes ``speed`` times faster than the wall clock, so at ``speed=60`` a one
minute candle lasts one real second and an outage of a few candles takes a few seconds. (The
simulator reads time only from Trio's clock, which is what lets tests drive it with MockClock.)
Its config times (push and ping intervals, timeouts) are therefore in simulated seconds.

Commands (JSON lines, see :mod:`benchmarks.control`): ``wait_subscriptions``, ``burst``,
``outage``, ``stall``, ``unstall``, ``stats``, ``wait_idle``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import trio

from tradeloop.sim import SimConfig, Simulator, open_simulator

from .control import Handler, serve_commands

__all__ = ["ScaledClock", "main"]

_WAIT_LIMIT = 120.0
"""Bound, in real seconds, on waiting for clients."""
_POLL = 0.01


class ScaledClock(trio.abc.Clock):
    """Trio time running ``speed`` times faster than ``time.perf_counter()``."""

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._base = time.perf_counter()

    def start_clock(self) -> None:
        self._base = time.perf_counter()

    def current_time(self) -> float:
        return (time.perf_counter() - self._base) * self._speed

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return max(0.0, (deadline - self.current_time()) / self._speed)


class _Host:
    def __init__(self, sim: Simulator, speed: float) -> None:
        self.sim = sim
        self.speed = speed

    async def _until(self, condition: Callable[[], bool]) -> None:
        # The simulator's counters have no event to wait on: poll them, bounded.
        with trio.fail_after(_WAIT_LIMIT * self.speed):
            while not condition():  # noqa: ASYNC110
                await trio.sleep(_POLL * self.speed)

    async def wait_subscriptions(self, count: int) -> dict[str, Any]:
        """Wait until ``count`` (connection, topic) subscriptions are acknowledged; when, on the shared clock."""
        await self._until(lambda: self.sim.stats.subscriptions >= count)
        return {"at_ns": time.monotonic_ns(), "connections": self.sim.stats.connections_open}

    async def burst(self, symbol_id: str, count: int, subscriptions: int) -> dict[str, Any]:
        await self._until(lambda: self.sim.stats.subscriptions >= subscriptions)
        start_ns = time.monotonic_ns()
        await self.sim.burst(symbol_id, "1m", count)
        return {"start_ns": start_ns, "end_ns": time.monotonic_ns()}

    async def outage(self, stall_seconds: float) -> dict[str, Any]:
        """Push nothing for ``stall_seconds`` (real; pings go on), then drop every socket at once."""
        self.sim.faults.stall(pings=True)
        stall_ns = time.monotonic_ns()
        await trio.sleep(stall_seconds * self.speed)
        drop_ns = time.monotonic_ns()
        dropped = self.sim.faults.drop_all()
        self.sim.faults.unstall()
        return {"stall_ns": stall_ns, "drop_ns": drop_ns, "dropped": dropped, "sim_now_ms": self.sim.now_ms()}

    async def stall(self) -> dict[str, Any]:
        """Push nothing until ``unstall``; heartbeats go on (an idle but healthy feed)."""
        self.sim.faults.stall(pings=True)
        return {}

    async def unstall(self) -> dict[str, Any]:
        self.sim.faults.unstall()
        return {}

    async def stats(self) -> dict[str, Any]:
        return asdict(self.sim.stats)

    async def wait_idle(self) -> dict[str, Any]:
        await self._until(lambda: self.sim.stats.connections_open == 0)
        return {}


async def _main(options: dict[str, Any]) -> None:
    speed = float(options.pop("speed", 1.0))
    async with open_simulator(SimConfig(**options)) as sim:
        host = _Host(sim, speed)
        handlers: dict[str, Handler] = {
            "wait_subscriptions": host.wait_subscriptions,
            "burst": host.burst,
            "outage": host.outage,
            "stall": host.stall,
            "unstall": host.unstall,
            "stats": host.stats,
            "wait_idle": host.wait_idle,
        }
        await serve_commands({"ws_url": sim.ws_url, "rest_url": sim.rest_url}, handlers)


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    trio.run(_main, options, clock=ScaledClock(float(options.get("speed", 1.0))))


if __name__ == "__main__":
    main()
