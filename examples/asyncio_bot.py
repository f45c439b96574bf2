"""An existing asyncio bot taking closed candles and ticks from tradeloop; Ctrl-C stops it cleanly.

    python examples/asyncio_bot.py          # the real BingX (internet); Ctrl-C to stop
    python examples/asyncio_bot.py --sim    # the embedded exchange, a minute's candle every second
    python examples/asyncio_bot.py --sim --candles 3    # stop after three closed candles
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tradeloop import BingX, StreamManager
from tradeloop.exchanges import Exchange
from tradeloop.models import Kline
from tradeloop.sim import SimConfig, open_simulator

SYMBOL = "BTC/USDT:USDT"


async def bot(exchange: Exchange, candles: int | None = None) -> list[Kline]:
    """Print ticks and closed candles until ``candles`` closed (None: until cancelled)."""
    closed: list[Kline] = []
    async with StreamManager.open([exchange]) as streams:

        async def print_ticks() -> None:
            async for tick in streams.ticks("bingx", SYMBOL):
                print("tick", tick.symbol, tick.last)

        ticker = asyncio.create_task(print_ticks())  # your bot's own asyncio tasks live alongside
        try:
            async for kline in streams.klines("bingx", SYMBOL, "1m", closed_only=True):
                print("closed", kline.open_time, kline.close)
                closed.append(kline)
                if len(closed) == candles:
                    break
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    return closed


async def on_the_simulator(candles: int | None) -> None:
    """The bot against the embedded exchange, its market 60 times faster than the wall clock."""
    async with open_simulator(SimConfig(symbols=["BTC-USDT"], speed=60.0)) as sim:
        await bot(sim.exchange(), candles)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", action="store_true", help="run against the embedded exchange")
    parser.add_argument("--candles", type=int, help="stop after this many closed candles (default: Ctrl-C)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # asyncio.run cancels the bot; every socket is closed
        asyncio.run(on_the_simulator(args.candles) if args.sim else bot(BingX(), args.candles))
