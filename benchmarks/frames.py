"""Kline pushes as the wire carries them: BingX's gzip streams in binary frames, Binance's JSON text frames.

Every push of a benchmark is encoded before the clock starts, so the load generator spends its time
writing bytes, not building them. The close price of a push is its sequence number, which lets a
consumer tell which push it holds (and the latency benchmark match it to its send time).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from wsproto.frame_protocol import FrameProtocol

__all__ = [
    "OPEN_TIME",
    "binance_kline_push",
    "binance_stream",
    "gzip_text",
    "kline_push",
    "symbol_ids",
    "unified",
    "ws_frame",
    "ws_ping",
    "ws_text_frame",
]

OPEN_TIME = 1_759_997_460_000
"""Open time of every pushed candle (a minute boundary): all pushes update one forming candle."""

_FRAMER = FrameProtocol(client=False, extensions=[])


def gzip_text(text: str) -> bytes:
    """One complete gzip stream, as BingX sends every server message (BINGX.md §1.2)."""
    compressor = zlib.compressobj(wbits=31)
    return compressor.compress(text.encode()) + compressor.flush()


def kline_push(symbol_id: str, seq: int) -> bytes:
    """The gzip payload of a swap ``@kline_1m`` push whose close is ``seq`` (BINGX.md §5 example 4)."""
    text = (
        f'{{"code":0,"dataType":"{symbol_id}@kline_1m","s":"{symbol_id}","data":[{{"c":"{seq}",'
        f'"o":"121684.1","h":"121697.7","l":"121638.7","v":"5.8244","T":{OPEN_TIME}}}]}}'
    )
    return gzip_text(text)


def binance_stream(symbol_id: str) -> str:
    """The Binance stream name of a BingX id's 1m klines: ``BTC-USDT`` -> ``btcusdt@kline_1m``."""
    return f"{symbol_id.replace('-', '').lower()}@kline_1m"


def binance_kline_push(symbol_id: str, seq: int, *, combined: bool) -> str:
    """A USDⓈ-M ``@kline_1m`` push whose close is ``seq`` (BINANCE.md §2.2), still forming (``"x":false``).

    ``combined``: wrapped as a ``/stream`` socket sends it, ``{"stream": ..., "data": ...}``; else
    bare, as a ``/ws`` socket does.
    """
    pair = symbol_id.replace("-", "")
    event = (
        f'{{"e":"kline","E":{OPEN_TIME + 1000},"s":"{pair}","k":{{"t":{OPEN_TIME},"T":{OPEN_TIME + 59_999},'
        f'"s":"{pair}","i":"1m","f":100,"L":200,"o":"121684.1","c":"{seq}","h":"121697.7","l":"121638.7",'
        f'"v":"5.8244","n":101,"x":false,"q":"708754.2","V":"2.9","Q":"352770.3","B":"0"}}}}'
    )
    return f'{{"stream":"{binance_stream(symbol_id)}","data":{event}}}' if combined else event


def ws_frame(payload: bytes) -> bytes:
    """A complete server-to-client binary frame (servers do not mask, so the bytes are fixed)."""
    return bytes(_FRAMER.send_data(payload, fin=True))


def ws_text_frame(text: str) -> bytes:
    """A complete server-to-client text frame."""
    return bytes(_FRAMER.send_data(text, fin=True))


def ws_ping(payload: bytes) -> bytes:
    """A server-to-client RFC 6455 ping control frame (Binance's heartbeat)."""
    return bytes(_FRAMER.ping(payload))


def symbol_ids(count: int) -> list[str]:
    """``count`` distinct BingX swap ids: BTC-USDT first, then B0001-USDT, B0002-USDT, ..."""
    return ["BTC-USDT", *(f"B{i:04d}-USDT" for i in range(1, count))]


def unified(symbol_ids: Iterable[str]) -> list[str]:
    """Unified swap symbols of BingX ids: ``BTC-USDT`` -> ``BTC/USDT:USDT``."""
    return [f"{base}/{quote}:{quote}" for base, _, quote in (s.partition("-") for s in symbol_ids)]
