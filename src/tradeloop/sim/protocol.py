"""What the simulator says on the wire: BingX topic names, push payloads, acks, errors, pings.

Written from the verbatim examples of BINGX.md §5 (and JKorf/BingX.Net captures for the spot
lastPrice/bookTicker shapes), independently of tradeloop's own client codec, so each checks the
other. Payloads are plain dicts in the exchange's key order; :func:`gzip_frame` turns one into the
binary frame every server message travels in.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec

from ..errors import InvalidValueError
from ..symbols import TIMEFRAMES, Market, next_open_time
from .market import CandleValues, SymbolSpec, TickerValues

__all__ = [
    "SPOT_INTERVALS",
    "SWAP_PING",
    "MalformedKind",
    "Payload",
    "PushKind",
    "SimTopic",
    "ack",
    "error",
    "gzip_frame",
    "kline_payload",
    "malformed_frame",
    "number",
    "parse_data_type",
    "percent_text",
    "spot_ping",
    "strip_essential_field",
    "tick_payload",
]

Payload = dict[str, Any]

SWAP_ERROR = 80014
"""Swap's 'invalid params' code (ccxt#29052); also used for unknown topics (undocumented)."""
SPOT_ERROR = 100400
"""Spot's ILLEGAL_ARGUMENT code; also used for unknown topics (undocumented)."""
TOO_MANY_TOPICS = 80403

SPOT_INTERVALS: dict[str, str] = {
    "1min": "1m",
    "3min": "3m",
    "5min": "5m",
    "15min": "15m",
    "30min": "30m",
    "60min": "1h",
    "2hour": "2h",
    "4hour": "4h",
    "6hour": "6h",
    "8hour": "8h",
    "12hour": "12h",
    "1day": "1d",
    "3day": "3d",
    "1week": "1w",
    "1mon": "1M",
    "1month": "1M",  # JKorf/BingX.Net's spelling; the docs say 1mon, so accept both
}
"""Spot WebSocket interval spelling -> unified timeframe (BINGX.md §2.2)."""


class PushKind(StrEnum):
    KLINE = "kline"
    TICKER = "ticker"
    LAST_PRICE = "lastPrice"
    MARK_PRICE = "markPrice"
    BOOK_TICKER = "bookTicker"


@dataclass(frozen=True, slots=True)
class SimTopic:
    """A subscribable dataType on one market, e.g. swap ``BTC-USDT@kline_1m``."""

    market: Market
    data_type: str
    kind: PushKind
    symbol_id: str
    timeframe: str | None = None
    """Unified timeframe of a kline topic."""


def parse_data_type(market: Market, data_type: str, symbols: frozenset[str]) -> SimTopic:
    """The topic ``data_type`` names on ``market``; ValueError saying why it is not served."""
    symbol_id, _, channel = data_type.partition("@")
    if symbol_id not in symbols:
        raise InvalidValueError(f"unknown symbol {symbol_id!r}")
    if channel.startswith("kline_"):
        interval = channel.removeprefix("kline_")
        timeframe = SPOT_INTERVALS.get(interval) if market is Market.SPOT else interval
        if timeframe not in TIMEFRAMES:
            raise InvalidValueError(f"unknown kline interval {interval!r}")
        return SimTopic(market, data_type, PushKind.KLINE, symbol_id, timeframe)
    try:
        kind = PushKind(channel)
    except ValueError:
        raise InvalidValueError(f"unknown dataType {data_type!r}") from None
    if kind is PushKind.KLINE or (kind is PushKind.MARK_PRICE and market is Market.SPOT):
        raise InvalidValueError(f"unknown dataType {data_type!r}")
    return SimTopic(market, data_type, kind, symbol_id)


_ENCODER = msgspec.json.Encoder()


def gzip_frame(payload: Payload | str) -> bytes:
    """One complete gzip stream (mtime 0) of the compact JSON of ``payload`` (a str as is)."""
    raw = payload.encode() if isinstance(payload, str) else _ENCODER.encode(payload)
    return zlib.compress(raw, 1, wbits=31)


SWAP_PING = gzip_frame("Ping")

_CHINA = timezone(timedelta(hours=8))


def spot_ping(ping_id: str, now_ms: int) -> bytes:
    """Spot's JSON ping, with the time in the UTC+8 format of BINGX.md §1.3."""
    moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(_CHINA)
    time_text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}" + moment.strftime("%z")
    return gzip_frame({"ping": ping_id, "time": time_text})


def ack(market: Market, request_id: Any, now_ms: int) -> Payload:
    if market is Market.SWAP:
        return {"id": request_id, "code": 0, "msg": "", "dataType": "", "data": None}
    return {"code": 0, "id": request_id, "msg": "SUCCESS", "timestamp": now_ms}


def error(market: Market, request_id: Any, message: str, now_ms: int, *, code: int | None = None) -> Payload:
    """An error envelope; ``code`` defaults to the market's invalid-parameter code."""
    if market is Market.SWAP:
        return {"id": request_id, "code": code or SWAP_ERROR, "msg": message, "dataType": "", "data": None}
    return {"code": code or SPOT_ERROR, "id": request_id, "msg": message, "timestamp": now_ms}


def number(text: str) -> float:
    """Spot sends JSON numbers; the shortest float repr keeps our decimal text."""
    return float(text)


def percent_text(change: int, base: int) -> str:
    if base == 0:
        return "0.00"
    return str((Decimal(change) * 100 / Decimal(base)).quantize(Decimal("0.01")))


def kline_payload(topic: SimTopic, spec: SymbolSpec, candles: list[CandleValues], event_ms: int) -> Payload:
    """A kline push of one candle update (swap: several when batching, oldest first)."""
    price = spec.price_text
    if topic.market is Market.SWAP:
        data = [
            {
                "c": price(c.close),
                "o": price(c.open),
                "h": price(c.high),
                "l": price(c.low),
                "v": spec.qty_text(c.volume),
                "T": c.open_time,
            }
            for c in candles
        ]
        return {"code": 0, "dataType": topic.data_type, "s": topic.symbol_id, "data": data}
    (candle,) = candles
    assert topic.timeframe is not None
    interval = topic.data_type.rpartition("_")[2]
    line = {
        "T": next_open_time(topic.timeframe, candle.open_time) - 1,
        "c": price(candle.close),
        "h": price(candle.high),
        "i": interval,
        "l": price(candle.low),
        "n": candle.trades,
        "o": price(candle.open),
        "q": spec.quote_text(candle.quote),
        "s": topic.symbol_id,
        "t": candle.open_time,
        "v": spec.qty_text(candle.volume),
    }
    return {
        "code": 0,
        "data": {"E": event_ms, "K": line, "e": "kline", "s": topic.symbol_id},
        "dataType": topic.data_type,
        "success": True,
    }


def tick_payload(topic: SimTopic, spec: SymbolSpec, t: TickerValues, event_ms: int) -> Payload:
    """A ticker, lastPrice, markPrice or bookTicker push built from the 24h statistics."""
    price, qty = spec.price_text, spec.qty_text
    swap = topic.market is Market.SWAP
    symbol, data_type = topic.symbol_id, topic.data_type
    if topic.kind is PushKind.TICKER:
        if swap:
            data: Payload = {
                "e": "24hTicker", "E": event_ms, "s": symbol,
                "p": price(t.last - t.open), "P": percent_text(t.last - t.open, t.open),
                "c": price(t.last), "L": qty(t.last_qty), "h": price(t.high), "l": price(t.low),
                "v": qty(t.volume), "q": spec.quote_text(t.quote), "o": price(t.open),
                "O": t.open_time, "C": t.last_time,
                "A": price(t.ask), "a": qty(t.ask_qty), "B": price(t.bid), "b": qty(t.bid_qty),
            }  # fmt: skip
            return {"code": 0, "dataType": data_type, "data": data}
        data = {
            "e": "24hTicker", "E": event_ms, "s": symbol,
            "p": number(price(t.last - t.open)), "P": percent_text(t.last - t.open, t.open) + "%",
            "o": number(price(t.open)), "h": number(price(t.high)), "l": number(price(t.low)),
            "c": number(price(t.last)), "v": number(qty(t.volume)),
            "q": number(spec.quote_text(t.quote)), "O": event_ms - 86_400_000, "C": event_ms,
            "A": number(price(t.ask)), "a": number(qty(t.ask_qty)),
            "B": number(price(t.bid)), "b": number(qty(t.bid_qty)),
        }  # fmt: skip
        return {"code": 0, "timestamp": event_ms, "dataType": data_type, "data": data}
    if topic.kind is PushKind.LAST_PRICE:
        if swap:
            data = {"e": "lastPriceUpdate", "E": event_ms, "s": symbol, "c": price(t.last)}
            return {"code": 0, "dataType": data_type, "data": data}
        data = {"c": price(t.last), "e": "lastPriceUpdate", "s": symbol}
        return {"code": 0, "data": data, "dataType": data_type, "success": True}
    if topic.kind is PushKind.MARK_PRICE:
        data = {"e": "markPriceUpdate", "E": event_ms, "s": symbol, "p": price(t.last)}
        return {"code": 0, "dataType": data_type, "data": data}
    if topic.kind is not PushKind.BOOK_TICKER:
        raise InvalidValueError(f"{topic.kind} is not a tick topic")
    if swap:
        data = {
            "e": "bookTicker", "u": t.step, "E": event_ms, "T": event_ms, "s": symbol,
            "b": price(t.bid), "B": qty(t.bid_qty), "a": price(t.ask), "A": qty(t.ask_qty),
        }  # fmt: skip
        return {"code": 0, "dataType": data_type, "data": data}
    data = {
        "A": qty(t.ask_qty), "B": qty(t.bid_qty), "E": event_ms, "a": price(t.ask),
        "b": price(t.bid), "e": "bookTicker", "s": symbol,
    }  # fmt: skip
    return {"code": 0, "data": data, "dataType": data_type, "success": True}


# The field a client cannot do without, per kind (kline: the open time).
_ESSENTIAL = {
    PushKind.TICKER: "c",
    PushKind.LAST_PRICE: "c",
    PushKind.MARK_PRICE: "p",
    PushKind.BOOK_TICKER: "b",
}


def strip_essential_field(topic: SimTopic, payload: Payload) -> Payload:
    """A copy of ``payload`` missing the one field a decoder needs most (a malformed push)."""
    data = payload["data"]
    if topic.kind is PushKind.KLINE:
        if topic.market is Market.SWAP:
            first = {key: value for key, value in data[0].items() if key != "T"}
            return {**payload, "data": [first, *data[1:]]}
        line = {key: value for key, value in data["K"].items() if key != "t"}
        return {**payload, "data": {**data, "K": line}}
    missing = _ESSENTIAL[topic.kind]
    return {**payload, "data": {key: value for key, value in data.items() if key != missing}}


class MalformedKind(StrEnum):
    BAD_GZIP = "bad_gzip"
    """A gzip stream cut in half."""
    BAD_JSON = "bad_json"
    """Valid gzip of JSON text cut in half."""
    MISSING_FIELD = "missing_field"
    """Valid JSON without the field a decoder needs most."""


def malformed_frame(topic: SimTopic, payload: Payload, kind: MalformedKind) -> bytes:
    """A broken version of the push ``payload``, of the given kind."""
    if kind is MalformedKind.BAD_GZIP:
        frame = gzip_frame(payload)
        return frame[: len(frame) // 2]
    if kind is MalformedKind.BAD_JSON:
        raw = _ENCODER.encode(payload)
        return zlib.compress(raw[: len(raw) // 2], 1, wbits=31)
    return gzip_frame(strip_essential_field(topic, payload))
