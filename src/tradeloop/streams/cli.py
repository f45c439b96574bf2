"""``tradeloop watch``: print one JSON object per kline or tick, one per line.

Meant for piping into other tools and for checking a connection by hand: it exits after
``--count`` objects, on Ctrl-C, or with a clear error when no data arrives in time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import trio

from ..errors import InvalidValueError
from ..exchanges import Exchange, exchange_class
from ..models import Kline, Tick
from ..symbols import parse_symbol, validate_timeframe
from .config import StreamConfig
from .fanout import Subscription
from .manager import StreamManager

T = TypeVar("T")

__all__ = ["add_parser", "kline_json", "tick_json"]

_encoder = msgspec.json.Encoder(decimal_format="number")


def kline_json(kline: Kline) -> bytes:
    return _encoder.encode(
        {
            "type": "kline",
            "exchange": kline.exchange,
            "symbol": kline.symbol,
            "timeframe": kline.timeframe,
            "open_time": kline.open_time,
            "open": kline.open,
            "high": kline.high,
            "low": kline.low,
            "close": kline.close,
            "volume": kline.volume,
            "closed": kline.closed,
        }
    )


def tick_json(tick: Tick) -> bytes:
    return _encoder.encode(
        {
            "type": "tick",
            "exchange": tick.exchange,
            "symbol": tick.symbol,
            "time": tick.time,
            "last": tick.last,
            "bid": tick.bid,
            "ask": tick.ask,
            "bid_size": tick.bid_size,
            "ask_size": tick.ask_size,
        }
    )


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watch", help="print a live kline or ticker stream as JSON lines", description=__doc__
    )
    parser.add_argument("exchange", help="exchange name, e.g. bingx")
    parser.add_argument("symbol", help="unified symbol (BTC/USDT:USDT, BTC/USDT) or an id (BTC-USDT = swap)")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--timeframe", help="kline timeframe, e.g. 1m")
    kind.add_argument("--ticker", action="store_true", help="the 24h ticker instead of klines")
    parser.add_argument(
        "--ws-url", help="WebSocket URL for the symbol's market; Binance: the origin ws://HOST:PORT (default: real)"
    )
    parser.add_argument("--rest-url", help="REST base URL; Binance: the origin (default: the real exchange)")
    parser.add_argument("--count", type=int, default=None, help="exit after this many objects")
    parser.add_argument("--closed-only", action="store_true", help="only closed candles")
    parser.add_argument(
        "--first-data-timeout", type=float, default=30.0, help="give up when nothing arrives for this long (s)"
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    exchange_type = exchange_class(args.exchange)
    symbol = exchange_type.normalize_symbol(args.symbol)
    if args.timeframe is not None:
        validate_timeframe(args.timeframe)
    if args.count is not None and args.count < 1:
        raise InvalidValueError(f"invalid --count {args.count!r}: must be at least 1")
    if args.closed_only and args.ticker:
        raise InvalidValueError("--closed-only applies to klines, not to --ticker")
    market = parse_symbol(symbol).market
    exchange = exchange_type(**exchange_type.url_options(market, ws_url=args.ws_url, rest_url=args.rest_url))
    return trio.run(_watch, args, exchange.name, exchange, symbol)


async def _watch(args: argparse.Namespace, name: str, exchange: Exchange, symbol: str) -> int:
    async with StreamManager.open({name: exchange}, StreamConfig()) as streams:
        if args.ticker:
            printed = await _print(streams.ticks(name, symbol), tick_json, args)
        else:
            channel = streams.klines(name, symbol, args.timeframe, closed_only=args.closed_only)
            printed = await _print(channel, kline_json, args)
        if printed == 0:
            errors = [e for t in streams.health().topics for e in t.recent_errors]
            reason = f": last error {errors[-1].message}" if errors else ""
            print(
                f"tradeloop watch: no data from {name} for {symbol} within {args.first_data_timeout:g} s{reason}",
                file=sys.stderr,
            )
            return 1
    return 0


async def _print(channel: Subscription[T], encode: Callable[[T], bytes], args: argparse.Namespace) -> int:
    """Print items until ``--count``; returns how many, 0 when the first one did not come in time."""
    out = sys.stdout.buffer
    printed = 0
    async with channel:
        with trio.move_on_after(args.first_data_timeout) as first_data:
            out.write(encode(await channel.receive()) + b"\n")
            out.flush()
            printed = 1
        if first_data.cancelled_caught:
            return 0
        while args.count is None or printed < args.count:
            out.write(encode(await channel.receive()) + b"\n")
            out.flush()
            printed += 1
    return printed
