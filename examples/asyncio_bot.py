"""An existing asyncio bot taking closed candles and ticks from tradeloop; Ctrl-C stops it cleanly.

    python examples/asyncio_bot.py      # the real BingX (internet); Ctrl-C to stop
"""

from __future__ import annotations

import asyncio
import contextlib

from tradeloop import BingX, StreamManager
from tradeloop.exchanges import Exchange
from tradeloop.models import Kline

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


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # asyncio.run cancels the bot; every socket is closed
        asyncio.run(bot(BingX()))
