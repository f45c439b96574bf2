"""The decoding floor: the least work any client must do per push, measured in a tight loop.

A BingX kline push cannot reach a strategy for less than: gunzip it, parse its JSON, and build the
value the strategy reads (here tradeloop's own :class:`~tradeloop.models.Kline` with Decimal
prices). The floor uses msgspec's typed decoding, the fastest parser at hand, and skips everything
a real client also needs (routing, validation, the socket, the event loop), so no client can beat it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal

import msgspec

from tradeloop.models import Kline

from .frames import kline_push

__all__ = ["Candle", "measure_floor"]


class Candle(msgspec.Struct):
    """A BingX kline as pushed (BINGX.md §5), typed so msgspec decodes it in C."""

    o: str
    h: str
    l: str  # noqa: E741 - BingX's field name
    c: str
    v: str
    T: int


class _Push(msgspec.Struct):
    code: int
    dataType: str
    s: str
    data: list[Candle]


_decode_push = msgspec.json.Decoder(_Push).decode


def _raw(frame: bytes) -> object:
    return frame


def _gunzip(frame: bytes) -> object:
    return zlib.decompress(frame, 31)


def _gunzip_parse(frame: bytes) -> object:
    return _decode_push(zlib.decompress(frame, 31))


def _floor(frame: bytes) -> object:
    push = _decode_push(zlib.decompress(frame, 31))
    candle = push.data[0]
    return Kline(
        "bingx",
        "BTC/USDT:USDT",
        "1m",
        candle.T,
        Decimal(candle.o),
        Decimal(candle.h),
        Decimal(candle.l),
        Decimal(candle.c),
        Decimal(candle.v),
    )


_STAGES: dict[str, Callable[[bytes], object]] = {
    "loop_only": _raw,
    "gunzip": _gunzip,
    "gunzip_json": _gunzip_parse,
    "floor": _floor,
}


def _best_us_per_call(function: Callable[[bytes], object], frames: Sequence[bytes], repeats: int) -> float:
    """Best of ``repeats`` passes over ``frames``: the floor is what the code costs undisturbed."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for frame in frames:
            function(frame)
        best = min(best, time.perf_counter() - start)
    return best / len(frames) * 1e6


def measure_floor(count: int, repeats: int = 3) -> dict[str, float]:
    """µs per push of each decoding stage over ``count`` distinct pushes, plus the floor's msgs/s."""
    frames = [kline_push("BTC-USDT", seq) for seq in range(1, count + 1)]
    result = {stage: _best_us_per_call(function, frames, repeats) for stage, function in _STAGES.items()}
    result["floor_msgs_per_s"] = 1e6 / result["floor"]
    return result
