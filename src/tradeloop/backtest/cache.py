"""Candles from the exchange's REST API, fetched once into a local SQLite cache and reused.

A backtest asks for (exchange, symbol, timeframe, [start, end)). The cache remembers which
ranges it has fetched completely (closed candles only), so a second backtest over the same
period sends no request at all, and one over a longer period fetches only what is missing. A
range the exchange has no candles for (before a listing, a maintenance window) is remembered as
fetched too: the gap is the data, reported by the backtest, not fetched again.

The cache key includes the client's REST base URL: the embedded simulator and the real BingX
share a name but not their candles.

Requests go through the exchange client's own ``fetch_klines`` (the same parser as live
warm-up), ``PAGE`` candles at a time, one request after the other; a rate-limit reply waits and
retries with exponential backoff.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import trio

from ..errors import TradeloopError
from ..exchanges import Exchange
from ..exchanges.base import RateLimitedError
from ..models import Kline
from ..symbols import next_open_time, timeframe_ms
from .history import CandleSeries, SeriesBuilder

__all__ = ["PAGE", "CacheError", "default_cache_path", "load_exchange_history"]

logger = logging.getLogger(__name__)

PAGE = 1000
"""Candles per request (BingX serves up to 1440)."""
_RETRIES = 5
_RETRY_BASE = 1.0
_REQUEST_TIMEOUT = 30.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS candles (
        source TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL, open_time INTEGER NOT NULL,
        open TEXT NOT NULL, high TEXT NOT NULL, low TEXT NOT NULL, close TEXT NOT NULL, volume TEXT NOT NULL,
        PRIMARY KEY (source, symbol, timeframe, open_time)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS fetched (
        source TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
        start INTEGER NOT NULL, end INTEGER NOT NULL)""",
)


class CacheError(TradeloopError):
    """The candle cache file cannot be used."""


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/tradeloop/candles.sqlite`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tradeloop" / "candles.sqlite"


async def load_exchange_history(
    client: Exchange,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    start_ms: int,
    end_ms: int,
    cache: Path,
    on_fetched: Callable[[int], None] | None = None,
) -> CandleSeries:
    """The closed candles opening in ``[start_ms, end_ms)``, from ``cache`` and, for what it lacks,
    from ``client``'s REST API (``on_fetched`` gets the count of each page).

    Raises the client's ExchangeError (an unknown symbol, say) and httpx errors on transport failure.
    """
    source = f"{exchange} {getattr(client, 'rest_url', '')}".strip()
    connection = await trio.to_thread.run_sync(_connect, cache)
    try:
        closed_until = min(end_ms, _last_closed_boundary(timeframe, int(time.time() * 1000)))
        missing = await trio.to_thread.run_sync(_missing, connection, source, symbol, timeframe, start_ms, closed_until)
        if missing:
            async with httpx.AsyncClient(timeout=_REQUEST_TIMEOUT) as http:
                for gap in missing:
                    await _fetch_range(client, http, connection, source, symbol, timeframe, *gap, on_fetched)
        rows = await trio.to_thread.run_sync(_select, connection, source, symbol, timeframe, start_ms, end_ms)
    except sqlite3.Error as exc:
        raise CacheError(f"the candle cache {cache} is unusable ({exc}); delete it to start afresh") from None
    finally:
        await trio.to_thread.run_sync(connection.close)
    builder = SeriesBuilder(
        exchange, symbol, timeframe, source=f"the cached candles of {symbol}", place=partial(_cached_candle, symbol)
    )
    for open_time, open_, high, low, close, volume in rows:
        builder.add(open_time, open_, high, low, close, volume)
    return builder.build()


def _cached_candle(symbol: str, open_time: int) -> str:
    return f"cached candle {open_time} of {symbol}"


def _last_closed_boundary(timeframe: str, now_ms: int) -> int:
    """The open time after the newest candle closed by ``now_ms``."""
    length = timeframe_ms(timeframe)
    return now_ms - now_ms % length if timeframe != "1M" else now_ms - 31 * 86_400_000


async def _fetch_range(
    client: Exchange,
    http: httpx.AsyncClient,
    connection: sqlite3.Connection,
    source: str,
    symbol: str,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    on_fetched: Callable[[int], None] | None,
) -> None:
    cursor = start_ms
    while cursor < end_ms:
        page = await _fetch_page(client, http, symbol, timeframe, cursor, end_ms - 1)
        page = [kline for kline in page if cursor <= kline.open_time < end_ms]
        if not page:
            break  # nothing more in the range: the rest is a gap in the exchange's data
        await trio.to_thread.run_sync(_store, connection, source, symbol, timeframe, page, cursor, None)
        if on_fetched is not None:
            on_fetched(len(page))
        cursor = next_open_time(timeframe, page[-1].open_time)
    await trio.to_thread.run_sync(_store, connection, source, symbol, timeframe, [], start_ms, end_ms)


async def _fetch_page(
    client: Exchange, http: httpx.AsyncClient, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> list[Kline]:
    for attempt in range(_RETRIES):
        try:
            return await client.fetch_klines(http, symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=PAGE)
        except RateLimitedError:
            if attempt == _RETRIES - 1:
                raise
            delay = _RETRY_BASE * 2**attempt
            logger.warning("rate limited fetching %s %s; retrying in %.0f s", symbol, timeframe, delay)
            await trio.sleep(delay)
    raise AssertionError("unreachable")


# --- SQLite, in a worker thread ------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise CacheError(f"cannot open the candle cache {path}: {exc}") from None
    try:
        for statement in _SCHEMA:
            connection.execute(statement)
    except sqlite3.Error as exc:
        connection.close()
        raise CacheError(f"the candle cache {path} is unusable ({exc}); delete it to start afresh") from None
    return connection


def _missing(
    connection: sqlite3.Connection, source: str, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    """Sub-ranges of ``[start_ms, end_ms)`` not fetched yet."""
    covered = connection.execute(
        "SELECT start, end FROM fetched WHERE source=? AND symbol=? AND timeframe=? AND end>? AND start<? "
        "ORDER BY start",
        (source, symbol, timeframe, start_ms, end_ms),
    ).fetchall()
    missing: list[tuple[int, int]] = []
    cursor = start_ms
    for start, end in covered:
        if start > cursor:
            missing.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < end_ms:
        missing.append((cursor, end_ms))
    return missing


def _store(
    connection: sqlite3.Connection,
    source: str,
    symbol: str,
    timeframe: str,
    klines: list[Kline],
    start_ms: int,
    fetched_end: int | None,
) -> None:
    """Store candles; with ``fetched_end``, record ``[start_ms, fetched_end)`` as fetched."""
    connection.execute("BEGIN")
    try:
        connection.executemany(
            "INSERT OR REPLACE INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (source, symbol, timeframe, k.open_time, *map(str, (k.open, k.high, k.low, k.close, k.volume)))
                for k in klines
            ],
        )
        if fetched_end is not None:
            connection.execute(
                "INSERT INTO fetched VALUES (?, ?, ?, ?, ?)", (source, symbol, timeframe, start_ms, fetched_end)
            )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _select(
    connection: sqlite3.Connection, source: str, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> list[tuple[int, str, str, str, str, str]]:
    return connection.execute(
        "SELECT open_time, open, high, low, close, volume FROM candles "
        "WHERE source=? AND symbol=? AND timeframe=? AND open_time>=? AND open_time<? ORDER BY open_time",
        (source, symbol, timeframe, start_ms, end_ms),
    ).fetchall()
