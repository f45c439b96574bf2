"""``tradeloop watch``: print one JSON object per kline or tick, one per line.

Meant for piping into other tools and for checking a connection by hand: it exits after
``--count`` objects (status 0), on Ctrl-C (130), when its reader goes away (141, quietly), or with
one clear line on stderr and status 1 when the exchange rejects the subscription or no data
arrives in time (naming the last error the streams recorded: refused, DNS, timeout, rejected).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio.abc
import msgspec
import trio

from .._groups import single_error
from ..cli import seconds
from ..errors import InvalidValueError, TradeloopError
from ..exchanges import Exchange, exchange_class
from ..models import Kline, Tick
from ..symbols import parse_symbol, validate_timeframe
from ..urls import parse_url
from .config import StreamConfig
from .errors import LogThrottle
from .fanout import Subscription
from .health import StreamHealth
from .manager import StreamManager
from .source import MarketData

T = TypeVar("T")

__all__ = ["NoDataError", "add_parser", "kline_json", "report_errors", "tick_json"]

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
        "--ws-url",
        type=_url("ws", "wss"),
        help="WebSocket URL for the symbol's market; Binance: the origin ws://HOST:PORT (default: real)",
    )
    parser.add_argument(
        "--rest-url", type=_url("http", "https"), help="REST base URL; Binance: the origin (default: the real exchange)"
    )
    parser.add_argument(
        "--poll", action="store_true", help="fetch over REST instead of watching (ccxt:<id> exchanges)"
    )
    parser.add_argument("--count", type=_count, default=None, help="exit after this many objects")
    parser.add_argument("--closed-only", action="store_true", help="only closed candles")
    parser.add_argument(
        "--first-data-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="give up when nothing arrives for this long (default 30)",
    )
    parser.set_defaults(handler=_handle)


def _url(*schemes: str) -> Callable[[str], str]:
    """An argparse type: a URL of one of ``schemes`` with a host and a valid port."""

    def check(text: str) -> str:
        try:
            parse_url(text, schemes, "URL")
        except InvalidValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a whole number >= 1")
    return value


def _handle(args: argparse.Namespace) -> int:
    """Errors go to :func:`tradeloop.cli.main`, which prints them as one line with the exit status."""
    exchange_type = exchange_class(args.exchange)
    symbol = exchange_type.normalize_symbol(args.symbol)
    if args.timeframe is not None:
        validate_timeframe(args.timeframe)
    if args.closed_only and args.ticker:
        raise InvalidValueError("--closed-only applies to klines, not to --ticker")
    market = parse_symbol(symbol).market
    options: dict[str, object] = dict(exchange_type.url_options(market, ws_url=args.ws_url, rest_url=args.rest_url))
    if args.poll:
        if "poll" not in inspect.signature(exchange_type).parameters:
            raise InvalidValueError(f"--poll applies to ccxt:<id> exchanges; {exchange_type.name} always streams")
        options["poll"] = True
    exchange = exchange_type(**options)
    return trio.run(_watch, args, exchange.name, exchange, symbol)


async def _watch(args: argparse.Namespace, name: str, exchange: Exchange, symbol: str) -> int:
    async with AsyncExitStack() as stack:
        if isinstance(exchange, anyio.abc.AsyncResource):  # a client with resources of its own (ccxt's)
            await stack.enter_async_context(exchange)
        streams = await stack.enter_async_context(StreamManager.open({name: exchange}, StreamConfig()))
        if args.ticker:
            await _print(streams.ticks(name, symbol), tick_json, args, streams, f"{name} for {symbol}")
        else:
            channel = streams.klines(name, symbol, args.timeframe, closed_only=args.closed_only)
            await _print(channel, kline_json, args, streams, f"{name} for {symbol}")
    return 0


class NoDataError(TradeloopError):
    """Nothing arrived within ``--first-data-timeout``."""


def _last_error(health: StreamHealth) -> str:
    """The newest error any socket or topic recorded, as the tail of the "no data" line."""
    last = health.last_error
    return "" if last is None else f"; last error: {last}"


async def _print(
    channel: Subscription[T],
    encode: Callable[[T], bytes],
    args: argparse.Namespace,
    streams: MarketData,
    source: str,
) -> None:
    """Print items until ``--count``; once data flows, the streams' new errors go to stderr.

    Raises NoDataError when the first one does not come in time (naming the streams' last error,
    read while the subscription still holds its topic), and SubscriptionError when the exchange
    rejects the subscription.
    """
    out = sys.stdout.buffer
    printed = 0
    async with channel:
        with trio.move_on_after(args.first_data_timeout) as first_data:
            out.write(encode(await channel.receive()) + b"\n")
            out.flush()
            printed = 1
        if first_data.cancelled_caught:
            reason = _last_error(streams.health())
            raise NoDataError(f"no data from {source} within {args.first_data_timeout:g} s{reason}")
        with single_error():  # a rejection leaves as SubscriptionError, not in a group
            async with trio.open_nursery() as nursery:
                nursery.start_soon(report_errors, streams, trio.current_time(), "watch")
                while args.count is None or printed < args.count:
                    out.write(encode(await channel.receive()) + b"\n")
                    out.flush()
                    printed += 1
                nursery.cancel_scope.cancel()


_ERROR_CHECK_INTERVAL = 1.0
"""Seconds between looks at the streams' errors while data flows."""


async def report_errors(streams: MarketData, since: float, command: str) -> None:
    """Each error the streams record from ``since`` on, as a line on stderr from ``tradeloop
    command``: a REST that fails (closes then go out unconfirmed) or a socket that reconnects
    would otherwise pass unseen while data still flows. At most one line per kind of error a
    minute, with the count.
    """
    throttle = LogThrottle()
    while True:
        await trio.sleep(_ERROR_CHECK_INTERVAL)
        for record in [r for r in streams.health().recent_errors if r.time > since]:
            covered = throttle.admit(record.kind)
            if covered is not None:
                more = f" (and {covered - 1} more since the last such line)" if covered > 1 else ""
                print(f"tradeloop {command}: {record}{more}", file=sys.stderr, flush=True)
            since = record.time
