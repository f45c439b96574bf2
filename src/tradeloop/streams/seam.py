"""Joining history to live candles: the candles that closed between the two.

A kline subscription's closed candles begin with the candle forming at the topic's first push,
and history fetched when subscribing ends with the newest candle closed at that moment. A candle
that closes between the fetch and the first push (the exchange pushes every few seconds; a
simulator or a quiet market may take longer) is in neither. Whoever joins the two, the engine
warming up its strategies and the collector backfilling Redis, asks for that seam here.
"""

from __future__ import annotations

import logging

import anyio

from ..models import Kline
from ..symbols import next_open_time
from .backoff import full_jitter_delay
from .source import MarketData

__all__ = ["SEAM_ATTEMPTS", "candles_between"]

log = logging.getLogger(__name__)

SEAM_ATTEMPTS = 3
"""Fetches before giving up on a seam: REST may show a close a moment after the socket did."""
_MAX_SEAM = 1000
"""Candles fetched at most (one REST page on every exchange we serve)."""


async def candles_between(
    source: MarketData, exchange: str, symbol: str, timeframe: str, *, after: int, before: int
) -> list[Kline]:
    """The closed candles opening after ``after`` and before ``before``, oldest first.

    They are the newest closed candles when ``before`` is a live candle that just closed, so
    they come from ``source.fetch_klines``. A short answer or a failed fetch is tried again with
    backoff, :data:`SEAM_ATTEMPTS` times in all; what is still missing then is logged and left
    out (the caller can see how many came). Raises nothing of its own: cancellation propagates.
    """
    wanted: list[int] = []
    open_time = next_open_time(timeframe, after)
    while open_time < before and len(wanted) < _MAX_SEAM:
        wanted.append(open_time)
        open_time = next_open_time(timeframe, open_time)
    if not wanted:
        return []
    where = f"{exchange} {symbol} {timeframe}"
    found: dict[int, Kline] = {}
    for attempt in range(1, SEAM_ATTEMPTS + 1):
        try:
            # The seam ends just before the newest close; a margin covers candles closed since.
            rows = await source.fetch_klines(exchange, symbol, timeframe, limit=min(len(wanted) + 2, _MAX_SEAM))
        except Exception as exc:  # any source's failure: logged, tried again, then given up
            log.warning("%s: fetching the candles before the first live one failed: %r", where, exc)
        else:
            found.update((row.open_time, row) for row in rows if after < row.open_time < before and row.closed)
            if len(found) >= len(wanted):
                break
        if attempt < SEAM_ATTEMPTS:
            await anyio.sleep(full_jitter_delay(attempt, 0.5, 2.0))
    if len(found) < len(wanted):
        log.error(
            "%s: %d of the %d candles between history and the first live candle could not be fetched",
            where,
            len(wanted) - len(found),
            len(wanted),
        )
    return [found[t] for t in sorted(found)]
