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
from ..symbols import next_open_time, timeframe_ms
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

    ``source.fetch_klines`` serves the newest closed candles, and the seam is not always among
    the newest few: a closed-only subscription hands over its first candle only once a later one
    appears, which with sparse pushes or an outage after the first push is several candles
    later. So the reply itself says how far back the window must reach: when its oldest candle
    is newer than the seam's first, the next fetch asks for that many more (up to one REST page
    of :data:`_MAX_SEAM`). A reply that reached back far enough but lacks candles (REST lagging
    the socket) or a failed fetch is tried again after a backoff; :data:`SEAM_ATTEMPTS` fetches
    in all. What is still missing then is logged and left out (the caller can see how many
    came). Raises nothing of its own: cancellation propagates.
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
    limit = min(len(wanted) + 2, _MAX_SEAM)  # a margin for candles closed since ``before``
    for attempt in range(1, SEAM_ATTEMPTS + 1):
        try:
            rows = [row for row in await source.fetch_klines(exchange, symbol, timeframe, limit=limit) if row.closed]
        except Exception as exc:  # any source's failure: logged, tried again, then given up
            log.warning("%s: fetching the candles before the first live one failed: %r", where, exc)
        else:
            found.update((row.open_time, row) for row in rows if after < row.open_time < before)
            if len(found) >= len(wanted) or attempt == SEAM_ATTEMPTS:
                break
            oldest = min((row.open_time for row in rows), default=None)
            if oldest is not None and oldest > wanted[0] and limit < _MAX_SEAM:
                # The window began after the seam: reach back further at once. (A month counts
                # 31 days here, so months are undercounted by a few; the margin covers them.)
                limit = min(limit + (oldest - wanted[0]) // timeframe_ms(timeframe) + 2, _MAX_SEAM)
                continue
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
