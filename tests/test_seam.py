"""Joining history to live candles: the seam between them is fetched, tried again, never invented."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import trio
from trio.testing import MockClock

from tradeloop.models import Kline
from tradeloop.streams import candles_between
from tradeloop.streams.seam import SEAM_ATTEMPTS

MINUTE = 60_000


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0)


def candle(minute: int) -> Kline:
    price = Decimal(100 + minute)
    return Kline("bingx", "BTC/USDT:USDT", "1m", minute * MINUTE, price, price, price, price, Decimal(1), closed=True)


class History:
    """A source whose REST knows the candles up to ``newest``, ``catch_up`` more after each fetch
    (a REST that lags the socket), after failing ``failures`` times."""

    def __init__(self, newest: int, *, failures: int = 0, catch_up: int = 0) -> None:
        self.newest = newest
        self.failures = failures
        self.catch_up = catch_up
        self.fetches: list[int] = []

    async def fetch_klines(self, exchange: str, symbol: str, timeframe: str, *, limit: int = 100) -> list[Kline]:
        self.fetches.append(limit)
        if self.failures:
            self.failures -= 1
            raise OSError("connection refused")
        rows = [candle(minute) for minute in range(self.newest - limit + 1, self.newest + 1)]
        self.newest += self.catch_up
        return rows


async def between(source: History, after: int, before: int) -> list[int]:
    rows = await candles_between(source, "bingx", "BTC/USDT:USDT", "1m", after=after * MINUTE, before=before * MINUTE)  # type: ignore[arg-type]
    return [row.open_time // MINUTE for row in rows]


async def test_the_candles_strictly_between_come_in_order(mock_clock: MockClock) -> None:
    source = History(newest=12)
    assert await between(source, 9, 13) == [10, 11, 12]
    assert source.fetches == [3 + 2]  # the seam and a margin, in one fetch


async def test_a_window_that_begins_after_the_seam_reaches_back_at_once(mock_clock: MockClock) -> None:
    # The first live candle (13) was handed over late: REST's newest is 20 by now.
    source = History(newest=20)
    start = trio.current_time()
    assert await between(source, 9, 13) == [10, 11, 12]
    assert source.fetches == [5, 5 + (16 - 10) + 2]  # the first reply began at 16
    assert trio.current_time() == start  # no backoff: the reply said where to look


async def test_no_seam_fetches_nothing(mock_clock: MockClock) -> None:
    source = History(newest=12)
    assert await between(source, 9, 10) == []
    assert await between(source, 12, 11) == []  # a repeat of history
    assert source.fetches == []


async def test_a_rest_that_lags_the_socket_is_asked_again(mock_clock: MockClock) -> None:
    source = History(newest=10, catch_up=1)  # the close of 11 shows on the second fetch
    assert await between(source, 9, 12) == [10, 11]
    assert len(source.fetches) == 2


async def test_failures_are_retried_then_what_is_missing_is_logged(
    mock_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    assert await between(History(newest=12, failures=SEAM_ATTEMPTS - 1), 9, 13) == [10, 11, 12]
    source = History(newest=12, failures=SEAM_ATTEMPTS)
    start = trio.current_time()
    with caplog.at_level(logging.WARNING, logger="tradeloop.streams.seam"):
        assert await between(source, 9, 13) == []
    assert len(source.fetches) == SEAM_ATTEMPTS
    assert trio.current_time() - start < 5  # bounded backoff
    assert "3 of the 3 candles between history and the first live candle could not be fetched" in caplog.text
    assert "connection refused" in caplog.text
