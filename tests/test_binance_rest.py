"""Binance REST replies: the documented bodies and error shapes of BINANCE.md §3 through the parsers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradeloop.errors import InvalidValueError
from tradeloop.exchanges import ErrorKind, ExchangeError, ProtocolError, RateLimitedError
from tradeloop.exchanges.binance.rest import check_listed, parse_body, parse_exchange_info, parse_klines, parse_ticker
from tradeloop.models import Kline
from tradeloop.symbols import Market

# §3.1 and §5 item 2, verbatim.
SPOT_ROWS = b'[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]'  # noqa: E501
USDM_ROWS = b"""[[1616338800000, "57212.69", "57315.00", "57196.19", "57300.00", "496.263", 1616339099999, "28425514.78940", 7160, "273.108", "15642623.69718", "0"],
 [1616339100000, "57300.00", "57300.00", "57200.61", "57206.47", "174.865", 1616339399999, "10009130.07051", 2602, "60.409", "3457649.49072", "0"]]"""  # noqa: E501


def test_usdm_rows_oldest_first_and_the_newest_still_open() -> None:
    older, newest = parse_klines(USDM_ROWS[::1], "BTC/USDT:USDT", "5m")
    assert older == Kline(
        "binance",
        "BTC/USDT:USDT",
        "5m",
        1616338800000,
        Decimal("57212.69"),
        Decimal("57315.00"),
        Decimal("57196.19"),
        Decimal("57300.00"),
        Decimal("496.263"),
        closed=True,
    )
    assert newest.open_time == 1616339100000 and not newest.closed


def test_spot_row_and_duplicates() -> None:
    (kline,) = parse_klines(b"[" + SPOT_ROWS[1:-1] + b"," + SPOT_ROWS[1:-1] + b"]", "ETH/BTC", "1w")
    assert kline.open == Decimal("0.01634790") and kline.volume == Decimal("148976.11427815")


def test_tickers_of_both_markets() -> None:
    spot = b'{"symbol":"BTCUSDT","priceChange":"1","lastPrice":"60000.10","lastQty":"0.1","bidPrice":"60000.00","bidQty":"2","askPrice":"60000.20","askQty":"3","volume":"1234.5","openTime":1,"closeTime":1700000000000}'  # noqa: E501
    tick = parse_ticker(spot, "BTC/USDT")
    assert (tick.time, tick.last, tick.bid, tick.ask, tick.ask_size) == (
        1700000000000,
        Decimal("60000.10"),
        Decimal("60000.00"),
        Decimal("60000.20"),
        Decimal("3"),
    )
    usdm = b'{"symbol":"BTCUSDT","lastPrice":"60000.1","volume":"9","openTime":1,"closeTime":1700000000001}'
    tick = parse_ticker(usdm, "BTC/USDT:USDT")
    assert tick.bid is None and tick.volume_24h == Decimal("9")


@pytest.mark.parametrize(
    ("body", "status", "error", "code"),
    [
        (b'{"code": -1121, "msg": "Invalid symbol."}', 400, ExchangeError, -1121),
        (b'{"code": -1003, "msg": "Too many requests."}', 400, RateLimitedError, -1003),
        (b"", 429, RateLimitedError, 429),
        (b'{"code": -1003, "msg": "Way too many requests; IP banned."}', 418, RateLimitedError, -1003),
        (b"<html>bad gateway</html>", 502, ExchangeError, 502),
        (b'{"code": 0, "msg": "Service unavailable from a restricted location"}', 451, ExchangeError, 0),
    ],
)
def test_errors(body: bytes, status: int, error: type[ExchangeError], code: int) -> None:
    with pytest.raises(error) as caught:
        parse_body(body, status=status)
    assert type(caught.value) is error and caught.value.code == code


def test_unreadable_bodies() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_body(b"<html>", status=200)
    assert caught.value.kind is ErrorKind.BAD_JSON
    with pytest.raises(ProtocolError) as caught:
        parse_body(b"[" * 100_000, status=200)
    assert caught.value.kind is ErrorKind.TOO_DEEP  # refused before the decoder would recurse
    assert parse_body(b"[" * 4 + b"]" * 4, max_depth=4) == [[[[]]]]
    with pytest.raises(ProtocolError) as caught:
        parse_body(b"[" * 5 + b"]" * 5, max_depth=4)
    assert caught.value.kind is ErrorKind.TOO_DEEP
    with pytest.raises(ProtocolError, match="open time"):
        parse_klines(b'[["x","1","1","1","1","1"]]', "BTC/USDT", "1m")
    with pytest.raises(ProtocolError, match="lastPrice"):
        parse_ticker(b'{"closeTime": 1}', "BTC/USDT")


def test_exchange_info_lists_symbols_and_perpetuals_only() -> None:
    spot = b'{"timezone":"UTC","serverTime":1,"symbols":[{"symbol":"BTCUSDT","status":"TRADING"},{"symbol":"LUNAUSDT","status":"BREAK"}]}'  # noqa: E501
    assert parse_exchange_info(Market.SPOT, spot) == {"BTCUSDT": "TRADING", "LUNAUSDT": "BREAK"}
    usdm = b'{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","contractType":"PERPETUAL"},{"symbol":"BTCUSDT_260925","status":"TRADING","contractType":"CURRENT_QUARTER"}]}'  # noqa: E501
    listed = parse_exchange_info(Market.SWAP, usdm)
    assert listed == {"BTCUSDT": "TRADING"}
    with pytest.raises(InvalidValueError, match="unknown symbol 'DOGE/USDT:USDT': Binance lists no USDⓈ-M perpetual"):
        check_listed(Market.SWAP, listed, "DOGE/USDT:USDT", "DOGEUSDT")
