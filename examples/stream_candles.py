"""Stream closed candles and a ticker with the StreamManager alone (no trading).

    python examples/stream_candles.py          # the real BingX (internet): 3 one-minute candles, ~3 minutes
    python examples/stream_candles.py --sim    # the embedded exchange in simulated time: about a second

With ``--sim`` the exchange runs inside this process and the whole run uses a Trio ``MockClock``
that jumps ahead whenever every task waits, so three minutes of market pass at once; halfway, every
socket is dropped, and the candles still arrive exactly once, in order.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

import trio
from trio.testing import MockClock

from tradeloop import BingX, StreamManager
from tradeloop.sim import SimConfig, Simulator, open_simulator

SYMBOL = "BTC/USDT:USDT"


async def stream(bingx: BingX, count: int, sim: Simulator | None = None) -> None:
    async with (
        StreamManager.open({"bingx": bingx}) as streams,
        streams.ticks("bingx", SYMBOL) as ticks,
        streams.klines("bingx", SYMBOL, "1m", closed_only=True) as candles,
    ):
        tick = await ticks.receive()
        print(f"{SYMBOL} bid {tick.bid} ask {tick.ask} last {tick.last}")
        received = 0
        async for candle in candles:
            received += 1
            opened = datetime.fromtimestamp(candle.open_time / 1000, UTC)
            print(f"closed candle {received}/{count}: {opened:%Y-%m-%d %H:%M} UTC close {candle.close}")
            if received == count:
                break
            if sim is not None and received == count // 2:
                print(f"simulator drops {sim.faults.drop_all()} socket(s)")
        print(f"reconnects: {sum(c.reconnects for c in streams.health().connections)}")


async def main(count: int, use_sim: bool) -> None:
    if not use_sim:
        await stream(BingX(), count)
        return
    async with open_simulator(SimConfig(symbols=["BTC-USDT"])) as sim:
        await stream(sim.exchange(), count, sim)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", action="store_true", help="run against the embedded exchange, in simulated time")
    parser.add_argument("--count", type=int, default=3, help="closed candles to print (default 3)")
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # reconnects are logged as warnings
    trio.run(main, args.count, args.sim, clock=MockClock(autojump_threshold=0.002) if args.sim else None)
