"""Soak: N simulated minutes at 2,000 kline topics with a fault every few minutes.

``python -m benchmarks.soak [--minutes 30] [--topics 2000] [--quick] [--trace-memory] [--out FILE]``

Reports the process's memory over time (it must stay flat), reconnects, and the candles lost,
duplicated, out of order or with wrong values (all must be 0), each closed candle checked the
moment it arrives against the simulator's truth (``Simulator.candles``), and at the end every
candle that closed in the window accounted for. Results go to ``benchmarks/results/soak.json``.

Clock: Trio's MockClock (autojump), with the simulator and the StreamManager in this process.
Simulated time then advances only when both sides have finished what was due, so a soak of 30
simulated minutes takes as long as its work takes and the machine can never fall behind the
clock: a sped-up wall clock at 2,000 topics would fire stall and pong timeouts whenever the
host lagged, measuring the host rather than the code.

Memory: the process's RSS, and with ``--trace-memory`` (three to four times the run time) the live
Python heap from ``tracemalloc``, split by whose code allocated each block: the simulator's (it keeps
every price step and candle it generated, by design: it serves them over REST, so it grows for
the whole run) and the rest, tradeloop's client with its libraries and this benchmark's per-topic
counters (a few numbers per topic: nothing here keeps the candles). The second is what must stay
flat. RSS also keeps the allocator's high-water marks from the bursts each fault causes.

The faults (one every ``FAULT_EVERY`` simulated minutes, each for a minute; REST never fails
while the socket hides a candle's final value, which no client could recover):
socket drop, stall with pings, 2 % malformed frames, REST 429 during a drop, duplicated and
reordered pushes, silent stall, final updates never pushed, REST 503 alone, multi-candle batches
with a drop.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import trio
from trio.testing import MockClock

import tradeloop.sim
from tradeloop.models import Kline
from tradeloop.sim import RestDown, SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager, Subscription
from tradeloop.symbols import next_open_time, timeframe_ms

from .harness import machine

__all__ = ["QUICK", "main", "run", "soak"]

_RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
START_MS = 1_760_000_400_000
"""A 30-minute boundary, so a candle of every timeframe used opens at the start."""
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m")
FAULT_EVERY = 3
"""Simulated minutes between the starts of two faults."""
FAULT_SECONDS = 60.0
QUIET_MINUTES = 3
"""Fault-free minutes at the end, so every candle closed in the window can arrive."""
_MINUTE = 60.0
QUICK = (12, 200)
"""(minutes, topics) of ``--quick``: four faults, about half a minute."""
_TRACE_FRAMES = 2
"""Frames kept per allocation: enough to see the simulator's code behind a shared helper
(``symbols.candle_open_time``); more frames cost far more time."""
_SIMULATOR_CODE = str(Path(tradeloop.sim.__file__).parent) + os.sep

Action = Callable[[Simulator], object]


def _set(**switches: object) -> Action:
    def apply(sim: Simulator) -> None:
        for name, value in switches.items():
            setattr(sim.faults, name, value)

    return apply


FAULTS: tuple[tuple[str, Action, Action], ...] = (
    ("socket drop", lambda sim: sim.faults.drop_all(), lambda sim: None),
    ("stall, pings flowing", lambda sim: sim.faults.stall(pings=True), lambda sim: sim.faults.unstall()),
    ("2% malformed frames", _set(malformed_rate=0.02), _set(malformed_rate=0.0)),
    (
        "REST 429 during a drop",
        lambda sim: (_set(rest_rate_limited=True)(sim), sim.faults.drop_all()),
        _set(rest_rate_limited=False),
    ),
    ("duplicated and reordered pushes", _set(duplicate_rate=0.2, reorder_rate=0.2), lambda sim: sim.faults.clear()),
    ("silent stall", lambda sim: sim.faults.stall(pings=False), lambda sim: sim.faults.unstall()),
    ("final updates never pushed", _set(skip_final_update=True), _set(skip_final_update=False)),
    ("REST 503", _set(rest_down=RestDown.HTTP_503), _set(rest_down=None)),
    (
        "batches, then a drop",
        lambda sim: (_set(batch_klines=True)(sim), sim.faults.drop_all()),
        _set(batch_klines=False),
    ),
)


@dataclass
class TopicCheck:
    """Checks one topic's closed candles as they arrive; keeps counters, not candles."""

    symbol_id: str
    timeframe: str
    expected_first: int
    last: int | None = None
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0

    def check(self, sim: Simulator, kline: Kline) -> None:
        self.delivered += 1
        if self.last is None:
            self.lost += (kline.open_time - self.expected_first) // timeframe_ms(self.timeframe)
        elif kline.open_time <= self.last:
            self.duplicated += 1  # a repeat, or out of order: either way not the next candle
            return
        else:
            self.lost += (kline.open_time - next_open_time(self.timeframe, self.last)) // timeframe_ms(self.timeframe)
        self.last = kline.open_time
        (truth,) = sim.candles(self.symbol_id, self.timeframe, kline.open_time, kline.open_time)
        values = (kline.open, kline.high, kline.low, kline.close, kline.volume)
        if not truth.closed or values != (truth.open, truth.high, truth.low, truth.close, truth.volume):
            self.mismatched += 1

    def finish(self, closed_by_ms: int) -> int:
        """Count the candles closed by ``closed_by_ms`` that never came; the candles expected."""
        length = timeframe_ms(self.timeframe)
        expected = (closed_by_ms - self.expected_first) // length
        last_due = self.expected_first + (expected - 1) * length
        if self.last is None:
            self.lost += expected
        elif self.last < last_due:
            self.lost += (last_due - self.last) // length
        return expected


@dataclass
class Soak:
    minutes: int
    topics: int
    checks: list[TopicCheck] = field(default_factory=list)
    memory: list[dict[str, float]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


async def _consume(sim: Simulator, channel: Subscription[Kline], check: TopicCheck) -> None:
    async with channel:
        async for kline in channel:
            check.check(sim, kline)


async def _play_faults(sim: Simulator, soak: Soak, origin: float) -> None:
    fault_minutes = soak.minutes - QUIET_MINUTES
    for index, minute in enumerate(range(FAULT_EVERY - 1, fault_minutes - 1, FAULT_EVERY)):
        name, start, stop = FAULTS[index % len(FAULTS)]
        await trio.sleep_until(origin + minute * _MINUTE)
        start(sim)
        soak.faults.append({"minute": minute, "fault": name, "seconds": FAULT_SECONDS})
        await trio.sleep(FAULT_SECONDS)
        stop(sim)
    sim.faults.clear()


def _live_heap() -> dict[str, float]:
    """The live Python heap in MiB: the simulator's blocks and everyone else's."""
    total = simulator = 0
    for trace in tracemalloc.take_snapshot().traces:
        total += trace.size
        if any(frame.filename.startswith(_SIMULATOR_CODE) for frame in trace.traceback):
            simulator += trace.size
    return {"heap_simulator_mib": round(simulator / 2**20, 1), "heap_client_mib": round((total - simulator) / 2**20, 1)}


async def _sample_memory(soak: Soak, origin: float, process: psutil.Process) -> None:
    for minute in range(soak.minutes + 1):
        await trio.sleep_until(origin + minute * _MINUTE)
        gc.collect()
        sample: dict[str, float] = {"minute": minute, "rss_mib": round(process.memory_info().rss / 2**20, 1)}
        if tracemalloc.is_tracing():
            sample.update(_live_heap())
        sample["python_objects"] = len(gc.get_objects())
        sample["real_seconds"] = round(time.perf_counter() - soak.started, 1)
        soak.memory.append(sample)
        print(f"minute {minute:3d}: {sample}", flush=True)


async def soak(minutes: int, topics: int) -> dict[str, Any]:
    """Run the soak in simulated time (call inside ``trio.run`` with a MockClock)."""
    symbols = [f"S{index}-USDT" for index in range(-(-topics // len(TIMEFRAMES)))]
    state = Soak(minutes, topics)
    config = SimConfig(symbols=symbols, start_ms=START_MS, seed=1, history_seconds=0)
    async with (
        open_simulator(config) as sim,
        StreamManager.open({"bingx": sim.exchange()}, StreamConfig()) as streams,
        trio.open_nursery() as nursery,
    ):
        origin = trio.current_time()
        for symbol_id in symbols:
            for timeframe in TIMEFRAMES:
                if len(state.checks) == topics:
                    break
                check = TopicCheck(symbol_id, timeframe, START_MS)
                channel = streams.klines("bingx", f"{symbol_id.replace('-', '/')}:USDT", timeframe, closed_only=True)
                state.checks.append(check)
                nursery.start_soon(_consume, sim, channel, check)
        nursery.start_soon(_play_faults, sim, state, origin)
        await _sample_memory(state, origin, psutil.Process())
        health = streams.health()
        nursery.cancel_scope.cancel()
    # Every candle closed a minute before the end has had a minute to be confirmed and delivered.
    closed_by = START_MS + round((minutes - 1) * _MINUTE * 1000)
    expected = sum(check.finish(closed_by) for check in state.checks)
    warm = [m for m in state.memory if m["minute"] >= min(5, minutes // 2)]
    return {
        "clock": "trio MockClock (autojump 0.01): simulated time, simulator and client in one process",
        "minutes": minutes,
        "topics": len(state.checks),
        "timeframes": list(TIMEFRAMES),
        "sockets": len(health.connections),
        "faults": state.faults,
        "memory": state.memory,
        "warmup_minutes": warm[0]["minute"],
        "growth_after_warmup": {
            key: round(warm[-1][key] - warm[0][key], 1) for key in warm[0] if key not in ("minute", "real_seconds")
        },
        "rss_max_mib": max(m["rss_mib"] for m in state.memory),
        "reconnects": health.total_reconnects,
        "parse_errors": health.total_parse_errors,
        "backfilled_candles": sum(t.backfilled_candles for t in health.topics),
        "unconfirmed_closes": sum(t.unconfirmed_closes for t in health.topics),
        "rest_errors": sum(t.rest_errors for t in health.topics),
        "candles": {
            "expected": expected,
            "delivered": sum(c.delivered for c in state.checks),
            "lost": sum(c.lost for c in state.checks),
            "duplicated_or_out_of_order": sum(c.duplicated for c in state.checks),
            "wrong_values": sum(c.mismatched for c in state.checks),
        },
        "real_seconds": round(time.perf_counter() - state.started, 1),
    }


def run(minutes: int = 30, topics: int = 2000, *, trace: bool = False) -> dict[str, Any]:
    """Run the soak (its own ``trio.run``, on a MockClock); the results, without the machine.

    ``trace``: measure the live Python heap with tracemalloc (three to four times the run time).
    """
    if minutes < QUIET_MINUTES + FAULT_EVERY or topics < 1:
        raise ValueError(
            f"soak needs minutes >= {QUIET_MINUTES + FAULT_EVERY} and topics >= 1, got {minutes}, {topics}"
        )
    if trace:
        tracemalloc.start(_TRACE_FRAMES)
    try:
        result: dict[str, Any] = trio.run(soak, minutes, topics, clock=MockClock(autojump_threshold=0.01))
    finally:
        tracemalloc.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30, help="simulated minutes (default 30)")
    parser.add_argument("--topics", type=int, default=2000, help="kline topics (default 2000)")
    parser.add_argument("--quick", action="store_true", help="a small run: 12 minutes, 200 topics (about 30 s)")
    parser.add_argument(
        "--trace-memory", action="store_true", help="also the live Python heap, by owner (3-4x the run time)"
    )
    parser.add_argument("--out", type=Path, default=_RESULTS, help=f"results file (default {_RESULTS})")
    args = parser.parse_args()
    minutes, topics = QUICK if args.quick else (args.minutes, args.topics)
    logging.basicConfig(level=logging.ERROR)  # the faults make the stream layer warn by design
    try:
        result = run(minutes, topics, trace=args.trace_memory)
    except ValueError as exc:
        parser.error(str(exc))
    result = {"mode": "quick" if args.quick else "full", "machine": machine(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    keys = ("topics", "sockets", "reconnects", "growth_after_warmup", "candles")
    summary = {key: result[key] for key in keys}
    print(json.dumps(summary, indent=1))
    print(f"results in {args.out} ({result['real_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
