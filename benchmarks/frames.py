"""BingX swap kline pushes as the wire carries them: gzip streams in unmasked binary WebSocket frames.

Every push of a benchmark is encoded before the clock starts, so the load generator spends its time
writing bytes, not building them. The close price of a push is its sequence number, which lets a
consumer tell which push it holds (and the latency benchmark match it to its send time).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from wsproto.frame_protocol import FrameProtocol

__all__ = ["OPEN_TIME", "gzip_text", "kline_push", "symbol_ids", "unified", "ws_frame"]

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


def ws_frame(payload: bytes) -> bytes:
    """A complete server-to-client binary frame (servers do not mask, so the bytes are fixed)."""
    return bytes(_FRAMER.send_data(payload, fin=True))


def symbol_ids(count: int) -> list[str]:
    """``count`` distinct BingX swap ids: BTC-USDT first, then B0001-USDT, B0002-USDT, ..."""
    return ["BTC-USDT", *(f"B{i:04d}-USDT" for i in range(1, count))]


def unified(symbol_ids: Iterable[str]) -> list[str]:
    """Unified swap symbols of BingX ids: ``BTC-USDT`` -> ``BTC/USDT:USDT``."""
    return [f"{base}/{quote}:{quote}" for base, _, quote in (s.partition("-") for s in symbol_ids)]
