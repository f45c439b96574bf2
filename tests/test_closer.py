"""The candle closer, sans-IO: pushes and REST rows in, klines to publish or a range to fetch out.

Plain function calls, no Trio: the exactly-once, in-order rule for closed candles lives here.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeloop.models import Kline
from tradeloop.streams.closer import CandleCloser, FetchRange

MINUTE = 60_000
T0 = 1_760_000_040_000


def kline(minute: int, volume: int = 1, *, closed: bool = False, close: int = 100) -> Kline:
    price = Decimal(close)
    open_time = T0 + minute * MINUTE
    return Kline("bingx", "BTC/USDT:USDT", "1m", open_time, price, price, price, price, Decimal(volume), closed)


def final(minute: int) -> Kline:
    """The exchange's final row of a candle (REST)."""
    return kline(minute, volume=1000 + minute, closed=True, close=200 + minute)


def opens(klines: list[Kline]) -> list[tuple[int, bool]]:
    return [((k.open_time - T0) // MINUTE, k.closed) for k in klines]


def test_updates_of_the_open_candle_are_published_at_once() -> None:
    closer = CandleCloser("1m", confirm_closes=True)
    assert opens(closer.feed([kline(0, 1), kline(0, 2)])) == [(0, False), (0, False)]
    assert closer.fetch_needed is None


def test_a_new_candle_asks_rest_to_confirm_the_previous_one_and_waits_for_it() -> None:
    closer = CandleCloser("1m", confirm_closes=True)
    closer.feed([kline(0, 5)])
    assert closer.feed([kline(1, 1)]) == []
    request = closer.fetch_needed
    assert request == FetchRange(T0, T0 + MINUTE, required=False, streamed=kline(0, 5))
    # Pushes arriving meanwhile wait behind the fetch, in order.
    assert closer.feed([kline(1, 2)]) == []
    published = closer.fetched([final(0)])
    assert opens(published) == [(0, True), (1, False), (1, False)]
    assert published[0] == final(0), "the exchange's final values, not the last push"


def test_without_confirmation_the_last_push_closes_the_candle() -> None:
    closer = CandleCloser("1m", confirm_closes=False)
    closer.feed([kline(0, 5)])
    assert opens(closer.feed([kline(1, 1)])) == [(0, True), (1, False)]
    assert closer.fetch_needed is None


def test_a_confirmation_that_gives_up_delivers_the_streamed_values_and_counts_it() -> None:
    closer = CandleCloser("1m", confirm_closes=True)
    closer.feed([kline(0, 5)])
    closer.feed([kline(1, 1)])
    published = closer.fetched(None)
    assert opens(published) == [(0, True), (1, False)]
    assert published[0].volume == 5 and closer.unconfirmed_closes == 1


def test_missed_candles_are_a_required_fetch_and_come_before_live_data() -> None:
    closer = CandleCloser("1m", confirm_closes=False)
    closer.feed([kline(0, 5)])
    assert closer.feed([kline(4, 1)]) == []
    request = closer.fetch_needed
    assert request is not None and request.required and (request.start, request.until) == (T0, T0 + 4 * MINUTE)
    published = closer.fetched([final(3), final(1), final(0), final(2), final(9)])  # any order, extra rows
    assert opens(published) == [(0, True), (1, True), (2, True), (3, True), (4, False)]
    assert closer.backfilled_candles == 3


def test_an_interruption_makes_the_last_push_untrustworthy() -> None:
    closer = CandleCloser("1m", confirm_closes=False)
    closer.feed([kline(0, 5)])
    closer.interrupted()  # the socket dropped: candle 0 may have moved on unseen
    closer.feed([kline(1, 1)])
    request = closer.fetch_needed
    assert request is not None and request.required, "a stale close must come from REST"


def test_a_repeat_after_an_interruption_shows_the_candle_is_current() -> None:
    closer = CandleCloser("1m", confirm_closes=False)
    closer.feed([kline(0, 5)])
    closer.interrupted()
    assert closer.feed([kline(0, 6)]) != []
    assert opens(closer.feed([kline(1, 1)])) == [(0, True), (1, False)]


def test_stale_reordered_and_duplicate_pushes_are_dropped_and_counted() -> None:
    closer = CandleCloser("1m", confirm_closes=False)
    closer.feed([kline(1, 5)])
    assert closer.feed([kline(1, 4)]) == [], "less volume: an older update"
    assert closer.feed([kline(1, 5)]) == [], "the same update again"
    assert closer.feed([kline(0, 9)]) == [], "an older candle"
    assert (closer.stale_updates, closer.duplicate_updates) == (2, 1)


def test_a_closed_flag_closes_the_candle_without_rest() -> None:
    closer = CandleCloser("1m", confirm_closes=False)
    closer.feed([kline(0, 5)])
    assert opens(closer.feed([kline(0, 6, closed=True)])) == [(0, True)]
    assert opens(closer.feed([kline(1, 1)])) == [(1, False)]
    assert closer.feed([kline(0, 7, closed=True)]) == [], "a candle closes once"


def test_a_backlog_behind_a_fetch_is_bounded_and_counts_as_an_interruption() -> None:
    closer = CandleCloser("1m", confirm_closes=True, max_queued=10)
    closer.feed([kline(0, 5)])
    closer.feed([kline(1, 1)])
    for volume in range(2, 30):
        closer.feed([kline(1, volume)])
    assert closer.queue_overflows >= 1
    published = closer.fetched([final(0)])
    assert opens(published)[0] == (0, True)
    updates = [k.volume for k in published[1:]]
    assert len(updates) <= 11 and updates == sorted(updates) and updates[-1] == 29, "what was kept, in order"


def test_fetched_without_a_request_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        CandleCloser("1m", confirm_closes=True).fetched([])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(1, 50), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_closed_candles_are_unique_in_order_and_final(pushes: list[tuple[int, int, bool]]) -> None:
    """Whatever arrives (reordered, repeated, with interruptions), closes are strictly increasing
    and every fetched range is answered with the exchange's finals, which are what gets delivered."""
    closer = CandleCloser("1m", confirm_closes=True, max_queued=8)
    published: list[Kline] = []
    for minute, volume, interrupt in pushes:
        if interrupt:
            closer.interrupted()
        published += closer.feed([kline(minute, volume)])
        while (request := closer.fetch_needed) is not None:
            rows = [final(m) for m in range((request.start - T0) // MINUTE, (request.until - T0) // MINUTE)]
            published += closer.fetched(rows)
    closed = [k for k in published if k.closed]
    assert [k.open_time for k in closed] == sorted({k.open_time for k in closed})
    assert all(k == final((k.open_time - T0) // MINUTE) for k in closed)
    if closed:
        first, last = (closed[0].open_time - T0) // MINUTE, (closed[-1].open_time - T0) // MINUTE
        assert len(closed) == last - first + 1, "no gap between the first and the last close"
