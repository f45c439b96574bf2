"""What the simulator says on the wire in Binance's dialect: stream names, pushes, replies, errors.

Written from the verbatim examples of BINANCE.md (§1.4 replies, §2.3–2.6 pushes, §3 REST rows and
errors), independently of tradeloop's own Binance codec, so each checks the other. Pushes are
built in the combined form ``{"stream": …, "data": …}``; a raw socket strips the wrapper
(:func:`unwrap`), so one encoding serves every subscriber.

The market model keeps BingX's ``BASE-QUOTE`` ids; Binance's id is the same without the dash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ..symbols import TIMEFRAMES, Market, next_open_time
from .market import CandleValues, SymbolSpec, TickerValues
from .protocol import MalformedKind, Payload, PushKind, SimTopic, percent_text

__all__ = [
    "INVALID_STREAM",
    "StreamRef",
    "binance_id",
    "combined_frame",
    "error_reply",
    "kline_data",
    "malformed_frame",
    "parse_stream",
    "shutdown_frame",
    "spot_text",
    "tick_data",
    "unwrap",
]

_STREAM: Final = re.compile(r"^([A-Za-z0-9]{1,40})@([A-Za-z0-9_@:+]{1,40})$")
"""A well-formed stream name: id, ``@``, channel. Anything else is refused (§1.4); an upper-case id
is well-formed but names nothing (Binance acknowledges it and stays silent)."""

INVALID_STREAM: Final = "Invalid request: invalid stream"

_CHANNELS: Final[dict[str, PushKind]] = {
    "ticker": PushKind.TICKER,
    "miniTicker": PushKind.LAST_PRICE,
    "bookTicker": PushKind.BOOK_TICKER,
    "markPrice": PushKind.MARK_PRICE,
    "markPrice@1s": PushKind.MARK_PRICE,
}
_PUBLIC: Final = frozenset({PushKind.BOOK_TICKER})
"""USDⓈ-M streams served under ``/public``; every other one is a ``/market`` stream (§1.1)."""


def binance_id(symbol_id: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``."""
    return symbol_id.replace("-", "")


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A well-formed stream name, and the topic it names if the simulator serves it."""

    name: str
    topic: SimTopic | None
    """None: acknowledged and silent, as Binance does for unknown symbols or the wrong path."""


def parse_stream(market: Market, public: bool | None, name: object, ids: dict[str, str]) -> StreamRef:
    """The stream ``name`` on a socket of ``market`` (USDⓈ-M: ``public`` says which path).

    ``ids`` maps lower-case Binance ids to the model's ids. Raises ValueError for a name that is
    not a stream at all; a well-formed stream the simulator does not serve is silent, not an error.
    """
    match = _STREAM.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(INVALID_STREAM)
    assert isinstance(name, str)
    lower_id, channel = match.groups()
    symbol_id = ids.get(lower_id)
    timeframe = None
    if channel.startswith("kline_"):
        kind: PushKind | None = PushKind.KLINE
        timeframe = channel.removeprefix("kline_")
        if timeframe not in TIMEFRAMES:
            kind = None
    else:
        kind = _CHANNELS.get(channel)
        if kind is PushKind.MARK_PRICE and market is Market.SPOT:
            kind = None
    if kind is None or symbol_id is None or (public is not None and public != (kind in _PUBLIC)):
        return StreamRef(name, None)
    return StreamRef(name, SimTopic(market, name, kind, symbol_id, timeframe))


_ENCODER: Final = msgspec.json.Encoder()


def combined_frame(topic: SimTopic, data: Payload) -> bytes:
    return _ENCODER.encode({"stream": topic.data_type, "data": data})


_DATA_AT: Final = b'","data":'


def shutdown_frame(now_ms: int) -> bytes:
    """Spot's restart notice, combined form (§1.5); :func:`unwrap` gives the raw one."""
    return _ENCODER.encode({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": now_ms}})


def unwrap(frame: bytes) -> bytes:
    """The raw event inside a combined frame (what a ``/ws`` socket gets); other frames as they are."""
    if not frame.startswith(b'{"stream":"'):
        return frame
    at = frame.find(_DATA_AT)
    return frame if at < 0 else frame[at + len(_DATA_AT) : -1]


def error_reply(request_id: Any, code: int, message: str) -> bytes:
    """An error in the nested shape Binance sends live (§1.4)."""
    return _ENCODER.encode({"error": {"code": code, "msg": message}, "id": request_id})


def spot_text(text: str) -> str:
    """Spot pads every decimal to 8 places (``"46686.15000000"``, §5); USDⓈ-M uses the symbol's precision."""
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction:0<8}"


class _Numbers:
    """How one market writes a symbol's prices, quantities and quote amounts."""

    def __init__(self, market: Market, spec: SymbolSpec) -> None:
        self._spec = spec
        self._pad = market is Market.SPOT

    def _out(self, text: str) -> str:
        return spot_text(text) if self._pad else text

    def price(self, ticks: int) -> str:
        return self._out(self._spec.price_text(ticks))

    def qty(self, lots: int) -> str:
        return self._out(self._spec.qty_text(lots))

    def quote(self, units: int) -> str:
        return self._out(self._spec.quote_text(units))


def kline_data(topic: SimTopic, spec: SymbolSpec, candle: CandleValues, event_ms: int, closed: bool) -> Payload:
    """A kline event (§2.3): the whole candle so far, ``x`` true on its final value."""
    assert topic.timeframe is not None
    n = _Numbers(topic.market, spec)
    symbol = binance_id(topic.symbol_id)
    first_trade = candle.last_step - candle.trades + 1
    line = {
        "t": candle.open_time,
        "T": next_open_time(topic.timeframe, candle.open_time) - 1,
        "s": symbol,
        "i": topic.timeframe,
        "f": first_trade,
        "L": candle.last_step,
        "o": n.price(candle.open),
        "c": n.price(candle.close),
        "h": n.price(candle.high),
        "l": n.price(candle.low),
        "v": n.qty(candle.volume),
        "n": candle.trades,
        "x": closed,
        "q": n.quote(candle.quote),
        "V": n.qty(candle.volume // 2),
        "Q": n.quote(candle.quote // 2),
        "B": "0",
    }
    return {"e": "kline", "E": event_ms, "s": symbol, "k": line}


def tick_data(topic: SimTopic, spec: SymbolSpec, t: TickerValues, event_ms: int) -> Payload:
    """A 24h ticker, mini ticker, book ticker or mark price event built from the 24h statistics."""
    n = _Numbers(topic.market, spec)
    spot = topic.market is Market.SPOT
    symbol = binance_id(topic.symbol_id)
    if topic.kind is PushKind.TICKER:
        data: Payload = {
            "e": "24hrTicker", "E": event_ms, "s": symbol,
            "p": n.price(t.last - t.open), "P": percent_text(t.last - t.open, t.open),
            "w": n.price(t.last), "c": n.price(t.last), "Q": n.qty(t.last_qty),
        }  # fmt: skip
        if spot:
            data.update({"x": n.price(t.open), "b": n.price(t.bid), "B": n.qty(t.bid_qty)})
            data.update({"a": n.price(t.ask), "A": n.qty(t.ask_qty)})
        data.update({
            "o": n.price(t.open), "h": n.price(t.high), "l": n.price(t.low),
            "v": n.qty(t.volume), "q": n.quote(t.quote),
            "O": event_ms - 86_400_000, "C": event_ms, "F": 0, "L": t.step, "n": t.step + 1,
        })  # fmt: skip
        return data
    if topic.kind is PushKind.LAST_PRICE:
        return {
            "e": "24hrMiniTicker", "E": event_ms, "s": symbol, "c": n.price(t.last), "o": n.price(t.open),
            "h": n.price(t.high), "l": n.price(t.low), "v": n.qty(t.volume), "q": n.quote(t.quote),
        }  # fmt: skip
    if topic.kind is PushKind.MARK_PRICE:
        mark = n.price(t.last)
        return {
            "e": "markPriceUpdate", "E": event_ms, "s": symbol, "p": mark, "ap": mark, "i": mark, "P": mark,
            "r": "0.00010000", "T": (event_ms // 28_800_000 + 1) * 28_800_000,
        }  # fmt: skip
    book = {"u": t.step, "s": symbol, "b": n.price(t.bid), "B": n.qty(t.bid_qty)}
    book.update({"a": n.price(t.ask), "A": n.qty(t.ask_qty)})
    if spot:
        return book  # spot's book ticker has no event type or time (§2.5)
    return {"e": "bookTicker", "E": event_ms, "T": event_ms, **book}


_ESSENTIAL: Final = {
    PushKind.TICKER: "c",
    PushKind.LAST_PRICE: "c",
    PushKind.MARK_PRICE: "p",
    PushKind.BOOK_TICKER: "b",
}


def malformed_frame(topic: SimTopic, data: Payload, kind: MalformedKind) -> bytes:
    """A broken version of the push ``data``: text cut in half (the two framing kinds, as Binance
    frames are plain JSON), or valid JSON without the field a decoder needs most."""
    if kind is not MalformedKind.MISSING_FIELD:
        frame = combined_frame(topic, data)
        return frame[: len(frame) // 2]
    if topic.kind is PushKind.KLINE:
        line = {key: value for key, value in data["k"].items() if key != "t"}
        return combined_frame(topic, {**data, "k": line})
    missing = _ESSENTIAL[topic.kind]
    return combined_frame(topic, {key: value for key, value in data.items() if key != missing})
