"""Unified symbols, timeframes and candle-time arithmetic."""

from __future__ import annotations

import pytest

from tradeloop.symbols import (
    TIMEFRAMES,
    Market,
    candle_open_time,
    next_open_time,
    normalize_symbol,
    parse_symbol,
    timeframe_ms,
    validate_timeframe,
)


def test_unified_symbols_name_their_market() -> None:
    swap = parse_symbol("BTC/USDT:USDT")
    assert (swap.base, swap.quote, swap.settle, swap.market) == ("BTC", "USDT", "USDT", Market.SWAP)
    spot = parse_symbol("ETH/USDT")
    assert (spot.settle, spot.market, spot.unified) == (None, Market.SPOT, "ETH/USDT")


@pytest.mark.parametrize("bad", ["BTCUSDT", "btc/usdt", "BTC/USDT:", "BTC-USDT", "", "BTC//USDT"])
def test_bad_symbols_are_named_with_the_accepted_forms(bad: str) -> None:
    with pytest.raises(ValueError, match=r"invalid symbol .*BTC/USDT:USDT"):
        parse_symbol(bad)


def test_bare_ids_mean_the_swap() -> None:
    assert normalize_symbol("BTC-USDT") == "BTC/USDT:USDT"
    assert normalize_symbol("BTC/USDT") == "BTC/USDT"
    with pytest.raises(ValueError, match="'BTC_USDT'"):
        normalize_symbol("BTC_USDT")


def test_timeframes() -> None:
    assert list(TIMEFRAMES) == [
        *("1m", "3m", "5m", "15m", "30m"),
        *("1h", "2h", "4h", "6h", "8h", "12h"),
        *("1d", "3d", "1w", "1M"),
    ]
    assert timeframe_ms("1h") == 3_600_000
    with pytest.raises(ValueError, match=r"'1y'.*1m, 3m"):
        validate_timeframe("1y")


def test_candle_open_times_follow_the_utc_calendar() -> None:
    t = 1_759_997_487_123  # 2025-10-09T08:11:27.123Z, a Thursday
    assert candle_open_time("1m", t) == 1_759_997_460_000
    assert candle_open_time("1h", t) == 1_759_996_800_000
    assert candle_open_time("1w", t) == 1_759_708_800_000  # Monday 2025-10-06
    assert candle_open_time("1M", t) == 1_759_276_800_000  # 2025-10-01
    assert next_open_time("1M", 1_759_276_800_000) == 1_761_955_200_000  # 2025-11-01
    assert next_open_time("1M", 1_764_547_200_000) == 1_767_225_600_000  # Dec -> Jan 2026
    assert next_open_time("5m", 1_759_997_400_000) == 1_759_997_700_000
